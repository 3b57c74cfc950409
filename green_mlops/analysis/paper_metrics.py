"""Table 3's metrics for every run, per phase, from the run table; one definition each (green_mlops.metrics.paper).

Training: the values the callback logged under the paper's names are used as they are (the callback
computed them with the same functions and its exact inputs); what is missing is computed here from
the logged energy, time, samples and model characteristics. Inference: computed here over the test
(or predict) stage, the window the paper's Table 3 is about.

With a net :class:`~green_mlops.analysis.basis.Basis` every energy and power input is net of idle
(Eq. 1–2) and nothing logged is reused (the callback's logged values are gross).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from green_mlops.analysis.basis import Basis
from green_mlops.metrics.numbers import number
from green_mlops.metrics.paper import PAPER_METRICS, derived_metrics

__all__ = ["PHASES", "paper_metrics"]

PHASES = ("inference", "train")


def _inputs(row: dict[str, Any], phase: str, basis: Basis) -> dict[str, float | None]:
    """The arguments of :func:`green_mlops.metrics.derived_metrics` for one run and phase."""
    def val(key: str) -> float | None:
        return number(row.get(key), text=True)

    return {
        "energy_J": val(basis.energy(phase)), "samples": val(f"{phase}_samples"),
        "duration_s": val(f"{phase}_time_s"), "accuracy": val("accuracy"),
        "macs": val("macs"), "trainable_params": val("trainable_params"),
        "model_size_bytes": val("model_size_bytes"), "gpu_energy_J": val(basis.device(phase, "gpu")),
        "utilisation": val(f"{phase}_util"), "ram_bytes": val("ram_bytes"),
        # gross: the device's mean power over the phase's own window (runs.py matches the windows)
        "gpu_power_W": None if basis.net else val(f"{phase}_power_gpu_W"),
    }


def paper_metrics(runs: pd.DataFrame, phase: str = "inference", basis: Basis | None = None) -> pd.DataFrame:
    """One row per run (same index as ``runs``), one column per Table 3 metric; missing inputs give NaN.

    ``phase`` is "inference" (the paper's Table 3) or "train"; ``basis`` gross (the default) or net energy.
    """
    basis = basis or Basis(False, "gross")
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}; got {phase!r}")
    rows = []
    for row in runs.to_dict("records"):
        computed = derived_metrics(**_inputs(row, phase, basis))
        if phase == "train" and not basis.net:
            logged = {k: number(row.get(k), text=True) for k in PAPER_METRICS}
            computed = {**computed, **{k: v for k, v in logged.items() if v is not None}}
        rows.append(computed)
    return pd.DataFrame(rows, index=runs.index, columns=list(PAPER_METRICS), dtype=float)
