"""Find every power source this machine offers, falling back visibly where measurement is missing.

Order of preference per domain: GPUs via NVML (NVIDIA, superchip modules included) and amdsmi (AMD);
board monitors (Jetson INA3221 rails, Apple silicon's powermetrics); CPU and DRAM via RAPL, else the estimating models. A source whose counter already covers the CPU or
DRAM (a Grace Hopper module) keeps those domains from being opened again, so nothing is counted
twice. Each fallback carries the reason the better method was unavailable.
"""
from __future__ import annotations

from green_mlops.meter.amd import discover_amd
from green_mlops.meter.apple import discover_apple
from green_mlops.meter.cpu_model import discover_cpu_model
from green_mlops.meter.dram_model import discover_dram_model
from green_mlops.meter.jetson import discover_jetson
from green_mlops.meter.nvml import discover_nvml
from green_mlops.meter.rapl import discover_rapl
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Finding
from green_mlops.meter.superchip import upgrade_superchips


def discover(settings: Settings | None = None, *, gpu: bool = True) -> Discovery:
    """Open the best source for every GPU, CPU package and DRAM domain found here.

    ``gpu=False`` skips the GPU libraries (NVML, amdsmi); a board or SoC that meters CPU and GPU
    through one interface (Jetson rails, powermetrics) is still read whole.
    """
    settings = settings or Settings.from_env()
    found = Discovery()
    if gpu:
        found.extend(upgrade_superchips(discover_nvml(settings), settings))
        amd = discover_amd(settings, first_index=len(found.sources))
        if amd.sources or not found.sources:  # "amdsmi not installed" is noise beside NVIDIA GPUs
            found.extend(amd)
    found.extend(discover_jetson(settings))
    found.extend(discover_apple(settings))
    covered: dict[str, list[str]] = {}
    for s in found.sources:
        for d in s.covers:
            covered.setdefault(d, []).append(s.info.name)
    for domain, owners in covered.items():
        what = "; ".join(dict.fromkeys(_what(found, o) for o in owners))
        whose = f"{owners[0]}'s measurement" if len(owners) == 1 else f"the measurements of {', '.join(owners)}"
        method = next(s.info.method for s in found.sources if s.info.name == owners[0])
        found.findings.append(Finding(domain, "covered", method, f"included in {whose} ({what}); not added again"))
    done = {s.info.domain for s in found.sources} | set(covered)  # CPU/DRAM a board monitor already meters
    rapl = discover_rapl(settings)
    found.sources.extend(s for s in rapl.sources if s.info.domain not in done)
    found.findings.extend(f for f in rapl.findings if not any(f.component.startswith(d) for d in done))
    measured = {s.info.domain for s in found.sources} | done
    for domain, fallback in (("cpu", discover_cpu_model), ("dram", discover_dram_model)):
        if domain in measured:
            continue
        reasons = [f.reason for f in rapl.findings if f.component.startswith(domain) and f.status == "absent"]
        why = "no RAPL: " + (reasons[0] if reasons else "no usable powercap zone")
        found.extend(fallback(settings, why))
    return found


def _what(found: Discovery, name: str) -> str:
    """The first clause of a source's detail: the device and what its counter includes."""
    src = next(s for s in found.sources if s.info.name == name)
    return src.info.detail.split(";", 1)[0]
