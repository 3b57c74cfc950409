"""Multi-fidelity, energy-aware pruning: stop a trial that cannot reach the study's accuracy/energy front.

Optuna's pruners (median, successive halving, Hyperband) compare one objective, and ``Trial.report`` is not
supported for multi-objective studies, so intermediate values are kept as the trial's user attribute
``fidelity_reports`` (a list of ``{step, planned_steps, accuracy, spent_J, projected_J, ...}``) and judged here.

The rule, at each report (a validation pass: each epoch, or ``--prune-every`` of an epoch):
  projected energy = training-loop energy so far / steps × planned steps (the budget's linear extrapolation,
                     energy is linear in steps; the pruner's extra validation passes are left out: they are the
                     search's cost, not the model's), plus the serving volume's inference energy: the validation
                     pass just run measured the model's inference energy per sample, × the serving volume; where
                     the runner does not say it, what the predictor expects when ``--predict-defer-margin`` is on
                     (else 0: an optimistic lower bound);
  best-case accuracy = accuracy now + margin: with ``--prune-margin auto`` (the default) the most any completed
                     trial of the study gained after the same fraction of its steps (:mod:`.margins`), else the
                     fixed margin given;
  pruned when a completed, feasible trial on the front has energy ≤ the projection AND accuracy above the best
  case (with ``auto``: by more than a tie the validation set cannot resolve).
Both bounds are optimistic for the trial, so a pruned trial is dominated unless it gains more than the margin.
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
from green_mlops.run.figures import batch_size
from green_mlops.search.margins import AUTO, SAMPLES_ATTR, check_margin

__all__ = ["DEFAULT_MARGIN", "FrontPoint", "ParetoPruning", "Verdict", "check_every", "check_margin", "front_points",
           "judge", "project_J", "verdict_dict"]

log = logging.getLogger(__name__)
REPORTS_ATTR = "fidelity_reports"
VERDICT_ATTR = "pruned"
DEFAULT_MARGIN = AUTO


@dataclass(frozen=True)
class FrontPoint:
    """A completed, feasible trial: its number, accuracy, lifecycle energy (J), validation samples if known."""

    trial: int
    accuracy: float
    energy_J: float
    samples: int | None = None


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
        return (f"pruned at step {self.step}: accuracy {self.accuracy:.4f} (best case {self.best_case_accuracy:.4f}) "
                f"does not beat trial {self.dominated_by} ({self.dominator_accuracy:.4f} at {self.dominator_J:.4g} J), "
                f"no dearer than this trial's projected {self.projected_J:.4g} J")


def front_points(trials: Iterable[FrozenTrial]) -> list[FrontPoint]:
    """Completed, feasible trials with accuracy and lifecycle energy (every one may dominate a pruned trial)."""
    out = []
    for t in trials:
        a = t.user_attrs
        if t.state != TrialState.COMPLETE or not all(v <= 0 for v in t.constraints.values()):
            continue
        acc, energy = a.get("accuracy"), a.get("lifecycle_J")
        if acc is not None and energy is not None and math.isfinite(acc) and math.isfinite(energy):
            n = a.get(SAMPLES_ATTR)
            out.append(FrontPoint(t.number, float(acc), float(energy), int(n) if n else None))
    return out


def project_J(spent_J: float, step: int, planned_steps: int | None) -> float:
    """Training energy at the planned end: linear in steps (the paper's §6.1.2), never less than spent."""
    if not planned_steps or step <= 0:
        return spent_J
    return max(spent_J, spent_J / step * planned_steps)


def judge(points: list[FrontPoint], step: int, accuracy: float, projected_J: float, margin: float,
          tolerance: Callable[[FrontPoint, float], float] | None = None) -> Verdict:
    """Prune when a point with energy ≤ ``projected_J`` is more accurate than ``accuracy + margin``; with a
    ``tolerance(point, best case)``, one less accurate by no more than that counts too (ε-dominance: the
    validation set cannot tell them apart, and the point is no dearer)."""
    best = min(1.0, accuracy + margin)
    beating = [p for p in points if p.energy_J <= projected_J
               and p.accuracy > best - (tolerance(p, best) if tolerance else 0.0)]
    if not beating:
        return Verdict(False, step, accuracy, best, projected_J)
    d = max(beating, key=lambda p: (p.accuracy, -p.energy_J))
    return Verdict(True, step, accuracy, best, projected_J, d.trial, d.accuracy, d.energy_J)


def verdict_dict(v: Verdict, spent_J: float, planned_steps: int | None) -> dict[str, Any]:
    """A report as stored in ``fidelity_reports``."""
    return {**asdict(v), "spent_J": spent_J, "planned_steps": planned_steps, "time": time.time()}


def check_every(every: float) -> float:
    """``--prune-every``, validated: a fraction of an epoch in (0, 1]."""
    if isinstance(every, bool) or not (isinstance(every, (int, float)) and 0 < every <= 1):
        raise ValueError(f"--prune-every must be a fraction of an epoch in (0, 1] (e.g. 0.25); got {every!r}")
    return float(every)


Report = Callable[..., bool]
"""``report(step, planned_steps, accuracy, spent_J, inference_J_per_sample=None) -> stop?``: what a runner calls
at each fidelity (``inference_J_per_sample``: the validation pass's energy per sample, when measured)."""


class ParetoPruning(*CALLBACK_BASES):  # type: ignore[misc]
    """Reports each validation's accuracy and the training loop's energy so far to ``report``; stops fit when told.

    ``every`` < 1 also validates every that fraction of an epoch (Lightning's ``val_check_interval``),
    so one-epoch trials get several fidelities. Those extra validation passes (every one not ending an epoch)
    are metered apart: ``overhead_J`` is what the search spent on them, which the model's own training would
    not (the sweep counts it in the search's cost and leaves it out of the model's lifecycle energy).
    """

    def __init__(self, report: Report, every: float = 1.0, accuracy_key: str = "val_acc") -> None:
        self.report, self.every, self.accuracy_key = report, check_every(every), accuracy_key
        self._energy: Any = None  # the EnergyCallback, found by what it offers (energy_so_far)
        self._planned: int | None = None
        self._val: tuple[float, bool] | None = None  # (start, ends an epoch) of the validation under way
        self._val_samples = 0  # samples of the validation under way
        self.pruned = False
        self.validation_J = 0.0
        self.overhead_J = 0.0

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

    def _meter(self) -> Any:
        meter = self._energy.meter if self._energy is not None else None
        return meter if meter is not None and meter.start_time is not None else None

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking and self._meter() is not None:
            self._val = (time.monotonic(), bool(trainer.is_last_batch))
            self._val_samples = 0

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._val_samples += batch_size(batch)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        meter, now, per_sample = self._meter(), time.monotonic(), None
        if meter is not None and self._val is not None:
            val_J = meter.energy(self._val[0], now, "validation").total_J
            per_sample = val_J / self._val_samples if self._val_samples else None
            self.validation_J += val_J
            self.overhead_J += 0.0 if self._val[1] else val_J
            self._val = None
        acc = trainer.callback_metrics.get(self.accuracy_key)
        step = trainer.global_step
        if self.pruned or acc is None or meter is None or step <= 0:
            return
        spent = meter.energy(meter.start_time, now, "pruning").total_J - self.validation_J
        try:
            stop = self.report(step, self._planned, float(acc), float(spent), inference_J_per_sample=per_sample)
        except Exception as exc:  # a pruning check that fails must not end the training
            log.warning("pruning check at step %s failed (%s: %s); the trial goes on", step, type(exc).__name__, exc)
            return
        if stop:
            self.pruned = True
            trainer.should_stop = True
