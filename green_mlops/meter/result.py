"""Energy of a span of time, per source and per domain, with provenance and the idle baseline.

Net energy follows the paper (Eq. 1, 2): gross energy minus idle power × duration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from green_mlops.meter.source import DOMAINS, SourceInfo

J_PER_WH = 3600.0


@dataclass(frozen=True)
class SourceEnergy:
    """One source's energy over a span; ``final`` is False while it rests on provisional samples."""

    info: SourceInfo
    energy_J: float
    duration_s: float
    idle_power_W: float | None = None
    final: bool = True
    gap_s: float = 0.0

    @property
    def mean_power_W(self) -> float:
        return self.energy_J / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def net_J(self) -> float | None:
        if self.idle_power_W is None:
            return None
        return self.energy_J - self.idle_power_W * self.duration_s

    def as_dict(self) -> dict[str, Any]:
        return {**self.info.as_dict(), "energy_J": self.energy_J, "energy_Wh": self.energy_J / J_PER_WH,
                "mean_power_W": self.mean_power_W, "idle_power_W": self.idle_power_W, "net_J": self.net_J,
                "final": self.final, "gap_s": self.gap_s}


@dataclass(frozen=True)
class EnergyResult:
    """Energy between ``start`` and ``end`` (monotonic seconds), summed per Eq. 3 of the paper."""

    name: str
    start: float
    end: float
    sources: list[SourceEnergy]
    wall_offset: float = 0.0
    events: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    @property
    def total_J(self) -> float:
        return sum(s.energy_J for s in self.sources)

    @property
    def net_J(self) -> float | None:
        nets = [s.net_J for s in self.sources]
        return None if not nets or any(n is None for n in nets) else sum(n for n in nets if n is not None)

    @property
    def final(self) -> bool:
        return all(s.final for s in self.sources)

    def domain_J(self, domain: str) -> float | None:
        """Energy of one domain (gpu, cpu, dram); None when no source covers it."""
        vals = [s.energy_J for s in self.sources if s.info.domain == domain]
        return sum(vals) if vals else None

    def domain_net_J(self, domain: str) -> float | None:
        vals = [s.net_J for s in self.sources if s.info.domain == domain]
        return None if not vals or any(v is None for v in vals) else sum(v for v in vals if v is not None)

    def source(self, name: str) -> SourceEnergy:
        for s in self.sources:
            if s.info.name == name:
                return s
        raise KeyError(f"no source {name!r}; have {[s.info.name for s in self.sources]}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary with provenance of every number."""
        return {
            "name": self.name,
            "start_time": self.start + self.wall_offset,
            "end_time": self.end + self.wall_offset,
            "duration_s": self.duration_s,
            "total_J": self.total_J,
            "total_Wh": self.total_J / J_PER_WH,
            "net_J": self.net_J,
            "final": self.final,
            "domains": {d: {"energy_J": self.domain_J(d), "net_J": self.domain_net_J(d),
                            "methods": sorted({f"{s.info.provenance}:{s.info.method}"
                                               for s in self.sources if s.info.domain == d})}
                        for d in DOMAINS if self.domain_J(d) is not None},
            "sources": [s.as_dict() for s in self.sources],
            "events": list(self.events),
        }

    def table(self) -> str:
        """A plain-text table: one row per source, then the total, in J and Wh."""
        has_idle = any(s.idle_power_W is not None for s in self.sources)
        head = ["source", "provenance", "method", "mean W", "energy J", "energy Wh"]
        if has_idle:
            head += ["idle W", "net J"]
        rows = []
        for s in self.sources:
            row = [s.info.name, s.info.provenance, s.info.method, f"{s.mean_power_W:.1f}",
                   f"{s.energy_J:.1f}", f"{s.energy_J / J_PER_WH:.4f}"]
            if has_idle:
                row += [_fmt(s.idle_power_W, ".1f"), _fmt(s.net_J, ".1f")]
            rows.append(row)
        total = ["total", "", "", f"{self.total_J / self.duration_s if self.duration_s > 0 else math.nan:.1f}",
                 f"{self.total_J:.1f}", f"{self.total_J / J_PER_WH:.4f}"]
        if has_idle:
            total += ["", _fmt(self.net_J, ".1f")]
        rows.append(total)
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in [head, *rows]]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        title = f"{self.name}: {self.duration_s:.2f} s" + ("" if self.final else " (provisional)")
        return "\n".join([title, *lines, *[f"note: {e}" for e in self.events]])

    def __str__(self) -> str:
        return self.table()


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
