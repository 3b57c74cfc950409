"""Find every power source this machine offers, falling back visibly where measurement is missing.

Order of preference per domain: GPU via NVML; CPU and DRAM via RAPL, else the estimating models.
Each fallback carries the reason the better method was unavailable.
"""
from __future__ import annotations

from green_mlops.meter.cpu_model import discover_cpu_model
from green_mlops.meter.dram_model import discover_dram_model
from green_mlops.meter.nvml import discover_nvml
from green_mlops.meter.rapl import discover_rapl
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery


def discover(settings: Settings | None = None, *, gpu: bool = True) -> Discovery:
    """Open the best source for every GPU, CPU package and DRAM domain found here."""
    settings = settings or Settings.from_env()
    found = Discovery()
    if gpu:
        found.extend(discover_nvml(settings))
    rapl = discover_rapl(settings)
    found.extend(rapl)
    covered = {s.info.domain for s in rapl.sources}
    for domain, fallback in (("cpu", discover_cpu_model), ("dram", discover_dram_model)):
        if domain in covered:
            continue
        reasons = [f.reason for f in rapl.findings if f.component.startswith(domain) and f.status == "absent"]
        why = "no RAPL: " + (reasons[0] if reasons else "no usable powercap zone")
        found.extend(fallback(settings, why))
    return found
