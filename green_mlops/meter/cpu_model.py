"""CPU power estimated as TDP × utilisation, for machines without RAPL (VMs, most clouds).

This is the crude fallback the paper describes and criticises (§2: power assumed linear in
utilisation up to the package's Thermal Design Power). It is scaled to this process's share of the
package: each logical CPU is worth ``TDP / threads_per_package`` watts at full load, so

    P = TDP / threads_per_package × cpus × utilisation

where ``cpus`` is :func:`host.effective_cpu_count` (affinity, capped by a cgroup quota) and
``utilisation`` is the mean busy fraction of those CPUs over the tick interval. A 16-vCPU VM on a
112-thread 350 W Xeon therefore reaches at most 350 / 112 × 16 = 50 W. Every number is
``estimated`` and the source's ``detail`` states the formula with the figures used.

The TDP and thread counts in :data:`TDP_TABLE` are the vendors' published figures (Intel ARK /
AMD product pages): TDP (Intel's "Processor Base Power" for recent parts, AMD's default TDP) and
logical CPUs (threads) per package. Cloud-only custom parts (Intel ``…CL``/``…C``/``…M``, AMD
``7R13``/``7B13``/``7V13``) have no public spec page; their rows use the retail part with the
same core count and clocks, named in a comment. Anything not in the table, including the masked
"Intel(R) Xeon(R) Processor" string some hypervisors report, falls back to
:data:`DEFAULT_W_PER_THREAD` unless the user states the figures with ``GREEN_MLOPS_CPU_TDP_W`` and
``GREEN_MLOPS_CPU_THREADS_PER_PACKAGE``.
"""
from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass
from typing import Literal

from green_mlops.meter import host
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Finding, PowerSource, Reading, SourceInfo, Tick

METHOD = "tdp-utilisation-model"

#: Watts per logical CPU at full load when the model is unknown and no settings are given.
#: 3.5 W/thread sits in the middle of current server parts at full TDP: Xeon 8480+ 350 W / 112 =
#: 3.1, EPYC 9654 360 W / 192 = 1.9, EPYC 7763 280 W / 128 = 2.2, Xeon 8380 270 W / 80 = 3.4,
#: Xeon Gold 6248 150 W / 40 = 3.75, Xeon 8375C 300 W / 64 = 4.7 (the high-clock cloud parts).
DEFAULT_W_PER_THREAD = 3.5

_ENV_TDP = "GREEN_MLOPS_CPU_TDP_W"
_ENV_THREADS = "GREEN_MLOPS_CPU_THREADS_PER_PACKAGE"


def _n(number: str) -> str:
    """A model number that must not run on into a suffix (8468 must not match 8468V or 8480+)."""
    return re.escape(number) + r"(?![\w+])"


#: (regex, TDP in W per package, logical CPUs per package); searched case-insensitively, first match
#: wins. Sources: Intel ARK (ark.intel.com) and AMD product pages (amd.com/en/products/processors).
TDP_TABLE: tuple[tuple[str, float, int], ...] = (
    # Intel Xeon Scalable, 4th gen (Sapphire Rapids)
    (r"xeon.*platinum\s*8480\+", 350.0, 112),  # 56 cores
    (r"xeon.*platinum\s*" + _n("8480C"), 350.0, 112),  # 56 cores (the DGX H100 / cloud H100 part)
    (r"xeon.*platinum\s*" + _n("8468"), 350.0, 96),  # 48 cores
    (r"xeon.*platinum\s*8462Y\+", 300.0, 64),  # 32 cores
    # 3rd gen (Ice Lake)
    (r"xeon.*platinum\s*" + _n("8380"), 270.0, 80),  # 40 cores
    (r"xeon.*platinum\s*" + _n("8375C"), 300.0, 64),  # AWS custom, 32 cores (as 8375C in AWS docs)
    (r"xeon.*platinum\s*" + _n("8358"), 250.0, 64),  # 32 cores
    (r"xeon.*gold\s*" + _n("6338"), 205.0, 64),  # 32 cores
    # 2nd gen (Cascade Lake)
    (r"xeon.*platinum\s*" + _n("8275CL"), 240.0, 48),  # AWS custom, 24 cores; as retail 8275 family
    (r"xeon.*platinum\s*" + _n("8259CL"), 210.0, 48),  # AWS custom, 24 cores
    (r"xeon.*gold\s*" + _n("6248"), 150.0, 40),  # 20 cores
    (r"xeon.*gold\s*" + _n("6230"), 125.0, 40),  # 20 cores
    # 1st gen (Skylake)
    (r"xeon.*platinum\s*" + _n("8175M"), 240.0, 48),  # AWS custom, 24 cores
    (r"xeon.*gold\s*" + _n("6148"), 150.0, 40),  # 20 cores
    # AMD EPYC 9004 (Genoa)
    (r"epyc\s*9654P?(?![\w+])", 360.0, 192),  # 96 cores
    (r"epyc\s*9554P?(?![\w+])", 360.0, 128),  # 64 cores
    # AMD EPYC 7003 (Milan) and 7002 (Rome)
    (r"epyc\s*" + _n("7763"), 280.0, 128),  # 64 cores
    (r"epyc\s*" + _n("7B13"), 280.0, 128),  # Google Cloud custom, 64 cores; as 7763
    (r"epyc\s*" + _n("7V13"), 280.0, 128),  # Azure custom, 64 cores; as 7763
    (r"epyc\s*" + _n("7R13"), 225.0, 96),  # AWS custom, 48 cores; as 7643
    (r"epyc\s*" + _n("7742"), 225.0, 128),  # 64 cores
    # Workstation and desktop
    (r"threadripper\s*pro\s*" + _n("5995WX"), 280.0, 128),  # 64 cores
    (r"ryzen\s*9\s*" + _n("7950X"), 170.0, 32),  # 16 cores
    (r"ryzen\s*9\s*" + _n("5950X"), 105.0, 32),  # 16 cores
    (r"core.*i9-" + _n("13900K"), 125.0, 32),  # 8P + 16E cores, base power (turbo 253 W)
    (r"core.*i9-" + _n("12900K"), 125.0, 24),  # 8P + 8E cores, base power (turbo 241 W)
    # Apple M-series: skipped (no published TDP; macOS has no RAPL-like interface we read).
)

Source = Literal["table", "settings", "default"]


@dataclass(frozen=True)
class CpuModelSpec:
    """The figures the model uses: TDP per package and logical CPUs per package, and their origin."""

    model: str
    tdp_w: float
    threads_per_package: int
    source: Source

    @property
    def w_per_thread(self) -> float:
        return self.tdp_w / self.threads_per_package

    def origin(self) -> str:
        """Where the figures came from, in words."""
        if self.source == "table":
            return f"TDP from built-in table for {self.model!r}"
        if self.source == "settings":
            return f"from {_ENV_TDP}/{_ENV_THREADS} settings; CPU model {self.model!r}"
        return (f"default {DEFAULT_W_PER_THREAD:g} W per logical CPU: CPU model {self.model!r} "
                "not recognised")


def _table(model_name: str) -> tuple[float, int] | None:
    for pattern, tdp, threads in TDP_TABLE:
        if re.search(pattern, model_name, re.IGNORECASE):
            return tdp, threads
    return None


def lookup_cpu(model_name: str, settings: Settings, visible_threads: int) -> CpuModelSpec:
    """The TDP and threads per package to use for ``model_name``.

    Settings win: ``cpu_tdp_w`` with ``cpu_threads_per_package`` (or, when only the TDP is set,
    ``visible_threads``). Otherwise the built-in table; otherwise :data:`DEFAULT_W_PER_THREAD` per
    logical CPU (a ``threads_per_package`` setting alone only changes the thread count there).
    """
    visible = max(int(visible_threads), 1)
    if settings.cpu_tdp_w is not None:
        threads = settings.cpu_threads_per_package or visible
        return CpuModelSpec(model_name, float(settings.cpu_tdp_w), int(threads), "settings")
    hit = _table(model_name)
    if hit is not None:
        tdp, threads = hit
        if settings.cpu_threads_per_package is not None:
            # a thread count from the user, the TDP from the table: per-thread power follows the user
            return CpuModelSpec(model_name, tdp, int(settings.cpu_threads_per_package), "table")
        return CpuModelSpec(model_name, tdp, threads, "table")
    threads = settings.cpu_threads_per_package or visible
    return CpuModelSpec(model_name, DEFAULT_W_PER_THREAD * threads, int(threads), "default")


def cpu_model_name() -> str:
    """The CPU's model string: /proc/cpuinfo "model name", else platform.processor(), else "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    name = " ".join((platform.processor() or "").split())
    return name or "unknown"


class TdpUtilisationCpu(PowerSource):
    """CPU power as ``TDP / threads_per_package × cpus × utilisation``, integrated exactly per tick.

    ``tick.cpu_util`` is the mean busy fraction of the ``tick.cpu_count`` CPUs the sampler watches
    over the interval since the previous tick. Busy CPUs = utilisation × ``tick.cpu_count``, capped
    at ``cpus``; without a cgroup quota ``tick.cpu_count == cpus`` and this is exactly
    ``cpus × utilisation``. Energy is the sum of P × Δt (rectangles are exact for an interval mean).
    """

    counter_interval = 0.0

    def __init__(self, spec: CpuModelSpec, cpus: float | None = None) -> None:
        self.spec = spec
        self.cpus = float(cpus if cpus is not None else host.effective_cpu_count())
        self.info = SourceInfo(name="cpu", domain="cpu", provenance="estimated", method=METHOD,
                               detail=self.formula())
        self._last_t: float | None = None
        self._energy = 0.0

    def formula(self) -> str:
        s = self.spec
        return (f"P = {s.tdp_w:g} W TDP / {s.threads_per_package} threads × {self.cpus:g} CPUs × "
                f"utilisation ({s.origin()})")

    def power(self, utilisation: float, cpu_count: int = 0) -> float:
        """Watts at ``utilisation`` (0–1) measured over ``cpu_count`` CPUs (0: over ``cpus``)."""
        if not math.isfinite(utilisation):
            return math.nan
        busy = utilisation * cpu_count if cpu_count > 0 else utilisation * self.cpus
        return self.spec.w_per_thread * min(max(busy, 0.0), self.cpus)

    def read(self, tick: Tick) -> Reading:
        util = tick.cpu_util
        p = self.power(util, tick.cpu_count)
        extras = {"cpu.util_pct": util * 100.0} if math.isfinite(util) else {}
        if self._last_t is None:
            self._last_t = tick.t
            return Reading(power_W=p, energy_J=0.0, extras=extras)
        dt = max(tick.t - self._last_t, 0.0)
        self._last_t = tick.t
        if math.isfinite(p):
            self._energy += p * dt
        return Reading(power_W=p, energy_J=self._energy, extras=extras)


def discover_cpu_model(settings: Settings, why: str, model_name: str | None = None,
                       cpus: float | None = None) -> Discovery:
    """Open the TDP × utilisation source, with a finding that says why and how it estimates."""
    name = model_name if model_name is not None else cpu_model_name()
    visible = os.cpu_count() or 1
    spec = lookup_cpu(name, settings, visible)
    src = TdpUtilisationCpu(spec, cpus)
    how = f"estimated as {src.formula()}"
    if spec.source == "default":
        how += (f"; set {_ENV_TDP} and {_ENV_THREADS} to the package's TDP and logical CPU count "
                "(vendor spec sheet) for a better estimate")
    elif spec.source == "settings" and settings.cpu_threads_per_package is None:
        how += f"; {_ENV_THREADS} not set, so the {spec.threads_per_package} visible CPUs are taken as one package"
    finding = Finding(component="cpu", status="estimated", method=METHOD, reason=f"{why}; {how}")
    return Discovery(sources=[src], findings=[finding])
