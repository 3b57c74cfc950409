"""What the search itself cost: the energy of every trial it started (complete, pruned, failed) beside its front.

A trial's ``spent_J`` is the energy it actually drew: its fit (training and validation) plus the inference
measurement it ran (energy per sample × the samples measured) — not the lifecycle energy, whose serving
volume is a projection. A deferred point was never trained and costs 0 J (the model characteristics the
predictor needed took milliseconds of CPU, not metered). ``front_J`` is the lifecycle energy summed over the
front's trials: what the models the search recommends cost.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

SPENT_ATTR = "spent_J"
METRIC_PREFIX = "search/"


def spent_J(training_J: float | None, inference_J_per_sample: float | None, inference_samples: int | None) -> float:
    """Energy a trial drew: fit plus the inference it measured (0 for what it did not run)."""
    train = float(training_J) if training_J is not None and math.isfinite(training_J) else 0.0
    inf = (float(inference_J_per_sample) * int(inference_samples)
           if inference_J_per_sample is not None and inference_samples and math.isfinite(inference_J_per_sample)
           else 0.0)
    return train + inf


@dataclass(frozen=True)
class SearchCost:
    """Totals over a sweep's trials; energies in J (provenance: the trials' own, see their MLflow runs)."""

    total_J: float
    complete_J: float
    pruned_J: float
    failed_J: float
    front_J: float
    front_trials: int
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    trials_deferred: int
    trials_unmeasured: int  # failed before any energy was logged: counted as 0 J and said so

    def metrics(self) -> dict[str, float]:
        """MLflow metrics for the sweep's parent run, under ``search/``."""
        return {f"{METRIC_PREFIX}{k}": float(v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One line printed under the ranking."""
        share = f" ({self.total_J / self.front_J:.2f}× the front's)" if self.front_J > 0 else ""
        unmeasured = (f"; {self.trials_unmeasured} failed trial(s) logged no energy (counted 0 J)"
                      if self.trials_unmeasured else "")
        return (f"search cost: {self.total_J:.4g} J over {self.trials_complete} complete, {self.trials_pruned} "
                f"pruned, {self.trials_failed} failed trial(s) ({self.pruned_J:.4g} J pruned, {self.failed_J:.4g} J "
                f"failed), {self.trials_deferred} deferred untrained; front of {self.front_trials} trial(s): "
                f"{self.front_J:.4g} J lifecycle{share}{unmeasured}")


def search_cost(table: pd.DataFrame) -> SearchCost:
    """Sum ``spent_J`` by state over the ranking table (rows: trials; ``state`` DEFERRED for deferred points)."""
    spent = pd.to_numeric(table.get("spent_J", pd.Series(dtype=float)), errors="coerce")
    state = table["state"] if "state" in table else pd.Series(dtype=str)

    def total(mask: Any) -> float:
        return float(spent[mask].fillna(0.0).sum())

    front = table["pareto_rank"].eq(1).fillna(False) if "pareto_rank" in table else pd.Series(False, index=table.index)
    failed = state.eq("FAIL")
    return SearchCost(total_J=total(state.ne("DEFERRED")), complete_J=total(state.eq("COMPLETE")),
                      pruned_J=total(state.eq("PRUNED")), failed_J=total(failed),
                      front_J=float(pd.to_numeric(table.loc[front, "lifecycle_J"], errors="coerce").sum()),
                      front_trials=int(front.sum()), trials_complete=int(state.eq("COMPLETE").sum()),
                      trials_pruned=int(state.eq("PRUNED").sum()), trials_failed=int(failed.sum()),
                      trials_deferred=int(state.eq("DEFERRED").sum()),
                      trials_unmeasured=int((failed & spent.isna()).sum()))
