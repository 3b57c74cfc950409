"""The pruner's accuracy margin when ``--prune-margin auto`` (the default), learned from the study itself.

At a report after a fraction f of its planned steps, a trial's best case is its accuracy now plus the largest
gain from f to the end that any completed trial of the same study made (its final accuracy minus its accuracy
at its last report at or before f): the study's own learning curves. A front point then prunes it only if it is
more accurate than that best case by more than a tie: TIE_Z standard errors of the difference of two
accuracies measured on the same number of validation samples (binomial), which no validation set of that size
can resolve. Until MIN_CURVES completed trials have reported at or before f (give or take one step of the asking
trial: validation schedules round to whole steps, so a quarter epoch is 0.248 of one trial and 0.25 of another),
nothing is pruned at f.

Why it needs no tuning: the gain follows how fast this task learns (a task that learns late grants large gains
early, so the pruner waits; a grid whose curves are flat prunes early), and the tie follows the accuracy level
and the size of the validation set, not a constant picked on one grid. Without a sample count (a runner that
does not say), the tie is TIE_SHARE of the accuracy spread of the front so far.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from green_mlops.argtypes import check_fraction

AUTO = "auto"
TIE_Z = 2.0
TIE_SHARE = 0.02
MIN_CURVES = 2
SAMPLES_ATTR = "accuracy_samples"


@dataclass(frozen=True)
class Curve:
    """A completed trial's reports as (fraction of planned steps, accuracy) and its final accuracy."""

    final: float
    reports: tuple[tuple[float, float], ...]


def curves(trials: Iterable[FrozenTrial], reports_attr: str) -> list[Curve]:
    """Learning curves of the completed trials that reported (the user attribute ``reports_attr``)."""
    out = []
    for t in trials:
        final, reps = t.user_attrs.get("accuracy"), t.user_attrs.get(reports_attr) or []
        if t.state != TrialState.COMPLETE or final is None or not math.isfinite(final):
            continue
        pts = tuple((r["step"] / r["planned_steps"], float(r["accuracy"])) for r in reps
                    if r.get("planned_steps") and r.get("accuracy") is not None)
        if pts:
            out.append(Curve(float(final), pts))
    return out


def remaining_gain(found: Sequence[Curve], fraction: float, slack: float = 0.0) -> float | None:
    """The most any completed trial gained after ``fraction`` of its steps (≥ 0); None with too few curves.

    ``slack``: how far past ``fraction`` a report still counts as "the same point" (the asking trial's one step:
    a quarter of 391 steps is step 97, 0.248, and a quarter of 196 is step 49, 0.25: the same validation)."""
    gains = []
    for c in found:
        before = [acc for f, acc in c.reports if f <= fraction + slack + 1e-9]
        if before:
            gains.append(c.final - before[-1])
    return max(0.0, *gains) if len(gains) >= MIN_CURVES else None


def tie(a: float, b: float, samples: int | None, spread: float) -> float:
    """An accuracy gap between ``a`` and ``b`` too small to tell on ``samples`` validation samples each."""
    if not samples:
        return TIE_SHARE * spread
    var = (min(max(a, 0.0), 1.0) * (1 - min(max(a, 0.0), 1.0)) + b * (1 - b)) / samples
    return TIE_Z * math.sqrt(max(var, 0.0))


def check_margin(margin: float | str | None) -> float | None:
    """``--prune-margin``: "auto"/None (learned, see the module) or a fixed accuracy gain in [0, 1]."""
    if margin is None or margin == AUTO:
        return None
    if isinstance(margin, str):
        try:
            margin = float(margin)
        except ValueError:
            pass  # refused below, naming what would do
    return check_fraction("--prune-margin ('auto' or an accuracy gain)", margin, example="0.05")
