"""The load generator's own CPU, told apart from the server's when both run on one machine.

A CPU meter (RAPL or the TDP × utilisation model) sees the whole machine: server, load generator
and anything else. This process reads its own CPU time (user + system, every thread: the load
generator and the meter's sampler) and the busy time of the usable CPUs, at the edges of the idle
window and of every steady window. Over a window of length T, with L the process's CPU seconds, B
the CPUs' busy seconds, and l₀, b₀ the same per second over the idle baseline,

    share = (L − l₀·T) / (B − b₀·T),     loadgen_cpu_energy = share × net CPU energy,

since net CPU energy is what the busy time above idle cost: per extra busy CPU second, the client's
extra seconds are priced the same as the server's. Without an idle baseline, share = L / B of the
gross CPU energy. It is an estimate (CPU time is not energy: the two differ in frequency and
in what they execute) and is always reported as one.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import psutil

from green_mlops.meter import usable_cpus

METHOD = "cpu-time share: (client CPU s − idle rate × T) / (busy CPU s − idle rate × T) × net CPU energy"
METHOD_GROSS = "cpu-time share: client CPU s / busy CPU s × gross CPU energy (no idle baseline)"


@dataclass(frozen=True)
class CpuClock:
    """Cumulative CPU seconds at one moment: this process's (all threads) and the usable CPUs' busy time."""

    t: float
    process_s: float
    busy_s: float

    def since(self, earlier: CpuClock) -> CpuSpan:
        return CpuSpan(self.t - earlier.t, self.process_s - earlier.process_s, self.busy_s - earlier.busy_s)


@dataclass(frozen=True)
class CpuSpan:
    """CPU seconds used over a span: by this process (``process_s``) and by the machine (``busy_s``)."""

    duration_s: float
    process_s: float
    busy_s: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def cpu_clock() -> CpuClock:
    """Read both clocks now (a few hundred microseconds; call at phase edges, not per request)."""
    own = psutil.Process().cpu_times()
    per = psutil.cpu_times(percpu=True)
    busy = 0.0
    for i in usable_cpus():
        if i < len(per):
            t = per[i]
            total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
            busy += total - t.idle - getattr(t, "iowait", 0.0)
    return CpuClock(time.monotonic(), own.user + own.system, busy)


def loadgen_share(window: CpuSpan, idle: CpuSpan | None) -> tuple[float, str]:
    """The client's share of the window's CPU energy (0–1), and how it was found; NaN when it cannot be."""
    if window.duration_s <= 0 or window.busy_s <= 0:
        return math.nan, "no CPU time counted in the window"
    if idle is None or idle.duration_s <= 0:
        return _clip(window.process_s / window.busy_s), METHOD_GROSS
    scale = window.duration_s / idle.duration_s
    extra_client = max(window.process_s - idle.process_s * scale, 0.0)
    extra_busy = window.busy_s - idle.busy_s * scale
    if extra_busy <= 0:
        return math.nan, "the machine's CPUs were no busier than at idle: no share to apportion"
    if extra_client > extra_busy:
        return 1.0, METHOD + " (the client's extra CPU time exceeded the machine's: CPUs saturated at idle? clipped to 1)"
    return _clip(extra_client / extra_busy), METHOD


def _clip(share: float) -> float:
    return min(max(share, 0.0), 1.0)
