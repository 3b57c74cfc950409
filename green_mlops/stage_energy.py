"""End-of-stage energy per device domain, gross and net of idle (the paper's Eq. 1–2), over the stage's window.

Every figure covers the same span as ``time/{stage}_s`` (the metered fit, test or predict run), so power and
energy per second divide like for like. Values travel as a fixed-length vector so ranks of a multi-GPU run
can sum them in one collective call even when some rank meters nothing (CPU and DRAM are metered once per host).
"""
from __future__ import annotations

import math

from green_mlops.meter.result import EnergyResult
from green_mlops.meter.source import DOMAINS

_FIELDS = ("covered", "gross_J", "net_known", "net_J", "idle_W")


def stage_vector(result: EnergyResult | None) -> list[float]:
    """Per domain (``DOMAINS`` order): covered (0/1), gross J, idle baseline known (0/1), net J, idle W."""
    out: list[float] = []
    for d in DOMAINS:
        sources = [s for s in result.sources if s.info.domain == d] if result is not None else []
        known = bool(sources) and all(s.idle_power_W is not None for s in sources)
        out += [float(bool(sources)), sum(s.energy_J for s in sources), float(known),
                sum(s.net_J or 0.0 for s in sources) if known else 0.0,
                sum(s.idle_power_W or 0.0 for s in sources) if known else 0.0]
    return out


def stage_metrics(stage: str, vector: list[float]) -> dict[str, float]:
    """MLflow names: ``energy/{stage}_{d}_J`` gross per domain; with an idle baseline on every covered domain also
    ``energy/{stage}_net_J``, ``energy/{stage}_{d}_net_J`` and ``power/idle_{d}_W``, ``power/idle_total_W``."""
    n = len(_FIELDS)
    rows = {d: dict(zip(_FIELDS, vector[i * n:(i + 1) * n])) for i, d in enumerate(DOMAINS)}
    covered = {d: r for d, r in rows.items() if r["covered"] > 0}
    metrics = {f"energy/{stage}_{d}_J": r["gross_J"] for d, r in covered.items()}
    if covered and all(r["net_known"] == r["covered"] for r in covered.values()):
        metrics.update({f"energy/{stage}_{d}_net_J": r["net_J"] for d, r in covered.items()})
        metrics[f"energy/{stage}_net_J"] = math.fsum(r["net_J"] for r in covered.values())
        metrics.update({f"power/idle_{d}_W": r["idle_W"] for d, r in covered.items()})
        metrics["power/idle_total_W"] = math.fsum(r["idle_W"] for r in covered.values())
    return metrics
