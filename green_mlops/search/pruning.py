"""Multi-fidelity, energy-aware pruning: stop a trial that cannot reach the study's accuracy/energy front.

Optuna's pruners (median, successive halving, Hyperband) compare one objective, and ``Trial.report`` is not
supported for multi-objective studies, so intermediate values are kept as the trial's user attribute
``fidelity_reports`` (a list of ``{step, planned_steps, accuracy, spent_J, projected_J, ...}``) and judged here.

The rule, at each report (a validation pass: each epoch, or ``--prune-every`` of an epoch):
  projected energy = training energy so far / steps × planned steps (the budget's linear extrapolation,
                     energy is linear in steps), plus the serving volume's inference energy the predictor
                     expects when ``--predict-defer-margin`` is on (else 0: an optimistic lower bound);
  best-case accuracy = accuracy now + ``margin`` (the gain the trial is assumed still able to make);
  pruned when a completed, feasible trial on the front has energy ≤ the projection AND accuracy > the best case.
Both bounds are optimistic for the trial, so a pruned trial is dominated unless it gains more than ``margin``.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from green_mlops.integrations.lightning_base import CALLBACK_BASES

log = logging.getLogger(__name__)
REPORTS_ATTR = "fidelity_reports"
VERDICT_ATTR = "pruned"
DEFAULT_MARGIN = 0.05


@dataclass(frozen=True)
class FrontPoint:
    """A completed, feasible trial: its number, accuracy and lifecycle energy (J)."""

    trial: int
    accuracy: float
    energy_J: float


@dataclass(frozen=True)
class Verdict:
    """The pruner's decision at one report, kept in the trial's user attributes so it can be checked."""

    prune: bool
    step: int
    accuracy: float
    best_case_accuracy: float
    projected_J: float
    dominated_by: int | None = None
    dominator_accuracy: float | None = None
    dominator_J: float | None = None

    def describe(self) -> str:
        """One line for the ranking's note column."""
        if not self.prune:
            return f"kept at step {self.step}"
        return (f"pruned at step {self.step}: accuracy {self.accuracy:.4f} (+margin {self.best_case_accuracy:.4f}) "
                f"cannot reach trial {self.dominated_by} ({self.dominator_accuracy:.4f} at {self.dominator_J:.4g} J) "
                f"for the projected {self.projected_J:.4g} J or less")


def check_margin(margin: float) -> float:
    """The optimistic accuracy margin, validated (0 ≤ margin ≤ 1)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (0 <= margin <= 1):
        raise ValueError(f"--prune-margin must be an accuracy gain between 0 and 1 (e.g. 0.05); got {margin!r}")
    return float(margin)


def front_points(trials: Iterable[FrozenTrial]) -> list[FrontPoint]:
    """Completed, feasible trials with accuracy and lifecycle energy (every one may dominate a pruned trial)."""
    out = []
    for t in trials:
        a = t.user_attrs
        if t.state != TrialState.COMPLETE or not all(v <= 0 for v in t.constraints.values()):
            continue
        acc, energy = a.get("accuracy"), a.get("lifecycle_J")
        if acc is not None and energy is not None and math.isfinite(acc) and math.isfinite(energy):
            out.append(FrontPoint(t.number, float(acc), float(energy)))
    return out


def project_J(spent_J: float, step: int, planned_steps: int | None) -> float:
    """Training energy at the planned end: linear in steps (the paper's §6.1.2), never less than spent."""
    if not planned_steps or step <= 0:
        return spent_J
    return max(spent_J, spent_J / step * planned_steps)


def judge(points: list[FrontPoint], step: int, accuracy: float, projected_J: float, margin: float) -> Verdict:
    """Prune when a point with energy ≤ ``projected_J`` is more accurate than ``accuracy + margin``."""
    best = min(1.0, accuracy + margin)
    beating = [p for p in points if p.energy_J <= projected_J and p.accuracy > best]
    if not beating:
        return Verdict(False, step, accuracy, best, projected_J)
    d = max(beating, key=lambda p: (p.accuracy, -p.energy_J))
    return Verdict(True, step, accuracy, best, projected_J, d.trial, d.accuracy, d.energy_J)


def verdict_dict(v: Verdict, spent_J: float, planned_steps: int | None) -> dict[str, Any]:
    """A report as stored in ``fidelity_reports``."""
    return {**asdict(v), "spent_J": spent_J, "planned_steps": planned_steps, "time": time.time()}


Report = Callable[[int, int | None, float, float], bool]
"""``report(step, planned_steps, accuracy, spent_J) -> stop?``: what a runner calls at each fidelity."""


class ParetoPruning(*CALLBACK_BASES):  # type: ignore[misc]
    """Reports each validation's accuracy and the fit's energy so far to ``report``; stops fit when told.

    ``every`` < 1 also validates every that fraction of an epoch (Lightning's ``val_check_interval``),
    so one-epoch trials get several fidelities.
    """

    def __init__(self, report: Report, every: float = 1.0, accuracy_key: str = "val_acc") -> None:
        if not (isinstance(every, (int, float)) and 0 < every <= 1):
            raise ValueError(f"--prune-every must be a fraction of an epoch in (0, 1] (e.g. 0.25); got {every!r}")
        self.report, self.every, self.accuracy_key = report, float(every), accuracy_key
        self._energy: Any = None  # the EnergyCallback, found by what it offers (energy_so_far)
        self._planned: int | None = None
        self.pruned = False

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # before on_fit_start: the first read of estimated_stepping_batches fixes the validation schedule
        if stage == "fit" and self.every < 1:
            trainer.val_check_interval = self.every
        if stage == "fit" and trainer.fit_loop.min_epochs == 1 and not trainer.fit_loop.min_steps:
            trainer.fit_loop.min_epochs = 0  # Lightning's implicit minimum would ignore a stop in the first epoch

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        found = [cb for cb in trainer.callbacks if callable(getattr(cb, "energy_so_far", None))]
        if not found:
            raise RuntimeError("ParetoPruning needs an EnergyCallback in the same Trainer to read energy from")
        self._energy = found[0]
        planned = trainer.estimated_stepping_batches
        self._planned = int(planned) if math.isfinite(planned) else None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.pruned:
            return
        acc = trainer.callback_metrics.get(self.accuracy_key)
        meter = self._energy.meter if self._energy is not None else None
        step = trainer.global_step
        if acc is None or meter is None or meter.start_time is None or step <= 0:
            return
        spent = meter.energy(meter.start_time, time.monotonic(), "pruning").total_J
        try:
            stop = self.report(step, self._planned, float(acc), float(spent))
        except Exception as exc:  # noqa: BLE001 - a pruning check that fails must not end the training
            log.warning("pruning check at step %s failed (%s: %s); the trial goes on", step, type(exc).__name__, exc)
            return
        if stop:
            self.pruned = True
            trainer.should_stop = True
