"""The one small interface every power source implements, and the provenance it reports.

A source owns one device (a GPU, a CPU package, the DRAM of a socket). Each sampler tick it
returns a :class:`Reading`: instantaneous power for curves and, where it has one, a cumulative
energy anchor that the integration trusts over the power curve.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Literal

Domain = Literal["gpu", "cpu", "dram"]
Provenance = Literal["measured", "estimated"]
DOMAINS: tuple[Domain, ...] = ("gpu", "cpu", "dram")


class SourceError(RuntimeError):
    """A source could not be read this tick; the sampler records it and carries on."""


@dataclass(frozen=True)
class SourceInfo:
    """What a source measures and how: the provenance carried by every number it produces."""

    name: str
    domain: Domain
    provenance: Provenance
    method: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "domain": self.domain,
            "provenance": self.provenance,
            "method": self.method,
            "detail": self.detail,
        }


@dataclass
class Reading:
    """One tick of one source.

    ``power_W`` is the power at the tick (NaN when unknown). ``energy_J`` is the cumulative
    energy since the source was opened when this tick read an energy counter or integrated a
    model exactly, else ``None``; the integration spreads each anchor-to-anchor increment along
    the power curve. ``extras`` holds telemetry (utilisation, memory, temperature) by column name.
    ``curve`` holds finer power samples ``(monotonic time, W)`` taken since the last read, where the
    device buffers them (NVML's 20 ms power samples); they shape energy between anchors.
    """

    power_W: float = math.nan
    energy_J: float | None = None
    extras: dict[str, float] = field(default_factory=dict)
    curve: list[tuple[float, float]] | None = None


@dataclass(frozen=True)
class Tick:
    """What the sampler knows when it asks sources to read: the time and host utilisation."""

    t: float
    full: bool
    cpu_util: float = math.nan
    cpu_count: int = 0


class PowerSource(abc.ABC):
    """A device whose power or energy the meter samples.

    ``counter_interval`` tells the sampler how often a *full* read (one that fetches an
    expensive energy counter) is worth its cost; cheap sources read fully every tick. A source may
    append notes (a counter reset, an estimated wrap) to a ``warnings`` list: the sampler moves
    them into the meter's events.
    """

    info: SourceInfo
    counter_interval: float = 0.0
    #: Other domains this source's energy already includes (a superchip's module counter covers the
    #: CPU and memory beside the GPU); discovery does not open sources for them, so none is counted twice.
    covers: tuple[Domain, ...] = ()
    #: A counter read at time t holds the energy up to about t - anchor_lag_s (half the update period
    #: of a counter that refreshes at an unknown phase); the integration places anchors there.
    anchor_lag_s: float = 0.0

    @abc.abstractmethod
    def read(self, tick: Tick) -> Reading:
        """Read the device now; raise :class:`SourceError` if it cannot be read."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles; the default does nothing."""

    def __repr__(self) -> str:
        i = self.info
        return f"<{type(self).__name__} {i.name} {i.domain} {i.provenance} {i.method}>"


@dataclass(frozen=True)
class Finding:
    """One line of ``green-mlops hardware``: what was looked for, what was found, and why."""

    component: str
    #: ``covered``: metered inside another component's counter (named in ``reason``), not added again.
    status: Literal["measured", "estimated", "absent", "covered"]
    method: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"component": self.component, "status": self.status, "method": self.method, "reason": self.reason}


@dataclass
class Discovery:
    """The sources a probe opened, plus findings explaining every fallback taken."""

    sources: list[PowerSource] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def extend(self, other: Discovery) -> None:
        self.sources.extend(other.sources)
        self.findings.extend(other.findings)
