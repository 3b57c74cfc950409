"""The energy-aware parts of a sweep worker: the pruner's reports and the predictor's order and deferrals.

Kept apart from :mod:`green_mlops.search.sweep` (the worker loop) so that each stays small; the sweep calls
:meth:`EnergyAware.order`, :meth:`EnergyAware.defer` and :meth:`EnergyAware.reporter`.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from green_mlops.search.margins import MIN_CURVES, check_margin, curves, remaining_gain, tie
from green_mlops.search.objectives import Objective
from green_mlops.search.predict import DEFERRAL_PREFIX, DEFERRED_ATTR, Features, Planner, Tolerance
from green_mlops.search.pruning import (
    REPORTS_ATTR,
    VERDICT_ATTR,
    FrontPoint,
    ParetoPruning,
    Verdict,
    front_points,
    judge,
    project_J,
    verdict_dict,
)

log = logging.getLogger(__name__)


@dataclass
class PruneState:
    """What the pruner decided for one trial (``verdict`` set when it stopped the trial)."""

    reports: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] | None = None
    callbacks: list[Any] = field(default_factory=list)

    @property
    def overhead_J(self) -> float:
        """What the pruner's extra validation passes drew (the search's energy, not the model's)."""
        return sum(float(getattr(cb, "overhead_J", 0.0)) for cb in self.callbacks)


def tolerance(points: list[FrontPoint]) -> Tolerance:
    """ε-dominance for ``auto``: a front point within the validation set's tie of a best case is as accurate."""
    spread = max(p.accuracy for p in points) - min(p.accuracy for p in points) if points else 0.0
    return lambda p, best: tie(p.accuracy, best, p.samples, spread)


class EnergyAware:
    """Pruning (``prune``) and prediction (``defer_margin`` not None) for one worker; either may be off."""

    def __init__(self, objective: Objective, prune: bool, prune_margin: float | str | None, prune_every: float,
                 defer_margin: float | str | None, features: Features | None) -> None:
        self.prune, self.prune_every, self.objective = prune, prune_every, objective
        self.margin = check_margin(prune_margin)  # None: auto (learned from the study's curves)
        self.planner = (Planner(features, objective, defer_margin)
                        if defer_margin is not None and features is not None else None)

    # -- prediction ---------------------------------------------------------------------------------
    def order(self, study: optuna.Study, waiting: list[FrozenTrial]) -> list[FrozenTrial]:
        """Waiting trials, cheapest predicted first, an untrained architecture's largest batch (its probe: the
        cheapest way to learn its energy and accuracy) before its other points (unchanged without a predictor)."""
        if self.planner is None or len(waiting) < 2:
            return waiting
        rows = self._trained_rows(study.get_trials(deepcopy=False))
        self.planner.refit(rows)
        trained, probe = {r["arch"] for r in rows}, {}
        for t in waiting:
            p = _fixed(t)
            probe[p["arch"]] = max(probe.get(p["arch"], 0), p["batch_size"])

        def key(t: FrozenTrial) -> tuple[bool, tuple[float, float]]:
            p = _fixed(t)
            return (p["arch"] not in trained and p["batch_size"] != probe[p["arch"]],
                    self.planner.rank_key(p))  # type: ignore[union-attr]
        try:
            return sorted(waiting, key=key)
        except Exception as exc:  # ranking is an optimisation; the grid order still works
            log.warning("could not rank untried points (%s: %s); keeping the queue's order", type(exc).__name__, exc)
            return waiting

    def defer(self, study: optuna.Study, trial: optuna.Trial, queued: FrozenTrial) -> dict[str, Any] | None:
        """If the queued point is predicted dominated, record the deferral, tell the study, return it."""
        if self.planner is None:
            return None
        params = _fixed(queued)
        points = front_points(study.get_trials(deepcopy=False))
        rec = self.planner.deferral(trial.number, params, points, tolerance(points) if self.margin is None else None)
        if rec is None:
            return None
        trial.set_user_attr(DEFERRED_ATTR, rec)
        study.set_user_attr(f"{DEFERRAL_PREFIX}{trial.number}", rec)
        for k, v in params.items():  # the point shows in the ranking like any trial's
            trial.set_user_attr(f"point_{k}", v)
        study.tell(trial, state=TrialState.PRUNED)
        return rec

    # -- pruning ------------------------------------------------------------------------------------
    def reporter(self, study: optuna.Study, trial: optuna.Trial) -> tuple[Any, PruneState, list[Any]]:
        """``report(step, planned, accuracy, spent_J, inference_J_per_sample=None) -> stop?`` for this trial, its
        state, and its callbacks."""
        state = PruneState()
        predicted_inference_J = self._predicted_inference_J(dict(trial.params))

        def report(step: int, planned: int | None, accuracy: float, spent: float,
                   inference_J_per_sample: float | None = None) -> bool:
            if not self.prune or state.verdict is not None:
                return False
            trials = study.get_trials(deepcopy=False)
            serving = self._serving_volume(trials)
            inference_J, basis = ((inference_J_per_sample * serving, "measured by this validation")
                                  if inference_J_per_sample is not None and serving is not None
                                  else (predicted_inference_J, "predicted" if predicted_inference_J else "none"))
            points, projected = front_points(trials), project_J(spent, step, planned) + inference_J
            margin, rule = self.margin, "fixed"
            if planned and step >= planned:  # the last validation: nothing left to save, the front decides
                margin, rule = None, "end of training"
            elif margin is None:
                margin = remaining_gain(curves(trials, REPORTS_ATTR), step / planned if planned else 1.0,
                                        1 / planned if planned else 0.0)
                rule = "auto" if margin is not None else f"auto: fewer than {MIN_CURVES} learning curves yet"
            v = (judge(points, step, accuracy, projected, margin, tolerance(points) if self.margin is None else None)
                 if margin is not None else Verdict(False, step, accuracy, accuracy, projected))
            rec = {**verdict_dict(v, spent, planned), "inference_J": inference_J, "inference_basis": basis,
                   "inference_J_per_sample": inference_J_per_sample,
                   "margin": margin, "margin_rule": rule}
            state.reports.append(rec)
            trial.set_user_attr(REPORTS_ATTR, state.reports)
            if v.prune:
                state.verdict = {**rec, "note": v.describe()}
                trial.set_user_attr(VERDICT_ATTR, state.verdict)
            return v.prune

        state.callbacks = [ParetoPruning(report, self.prune_every)] if self.prune else []
        return report, state, state.callbacks

    def _serving_volume(self, trials: list[FrozenTrial]) -> int | None:
        """Samples the lifecycle serves: the objective's, else the median over completed trials (None: unknown)."""
        if self.objective.inference_samples is not None:
            return int(self.objective.inference_samples)
        seen = [int(t.user_attrs["inference_samples"]) for t in trials if t.state == TrialState.COMPLETE
                and t.user_attrs.get("inference_samples") is not None]
        return statistics.median_low(seen) if seen else None

    def _predicted_inference_J(self, params: dict[str, Any]) -> float:
        """The serving volume's inference energy the predictor expects for this point; 0 (a lower bound) without one."""
        if self.planner is None or not params:
            return 0.0
        try:
            p = self.planner.predict(params)
        except Exception as exc:  # the projection falls back to its lower bound
            log.warning("no inference prediction for %s (%s: %s); pruning projects training only", params,
                        type(exc).__name__, exc)
            return 0.0
        return max(0.0, p["predicted_lifecycle_J"] - p["predicted_training_J"]) if p else 0.0

    def _trained_rows(self, trials: list[FrozenTrial]) -> list[dict[str, Any]]:
        """Completed trials, and pruned ones (their training so far; accuracy: the best case they were granted)."""
        rows = []
        for t in trials:
            a = t.user_attrs
            if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or a.get("training_J") is None or not t.params:
                continue
            acc, planned, per_sample = a.get("accuracy"), None, a.get("inference_J_per_sample")
            if t.state == TrialState.PRUNED:  # its inference per sample: what its validation passes measured
                verdict = a.get(VERDICT_ATTR) or {}
                acc, planned = verdict.get("best_case_accuracy"), verdict.get("planned_steps")
                per_sample = per_sample or verdict.get("inference_J_per_sample")
            rows.append({**t.params, "state": t.state.name, "accuracy": acc, "training_J": a.get("training_J"),
                         "planned_steps": planned,
                         "steps": a.get("steps"), "inference_J_per_sample": per_sample,
                         "inference_samples": a.get("inference_samples")})
        return rows


def deferrals(study: optuna.Study) -> list[dict[str, Any]]:
    """Every deferral recorded in the study, by trial number."""
    recs = [v for k, v in study.user_attrs.items() if k.startswith(DEFERRAL_PREFIX)]
    return sorted(recs, key=lambda r: r.get("trial", 0))


def _fixed(t: FrozenTrial) -> dict[str, Any]:
    """The point a queued trial will run (Optuna's enqueue keeps it in the ``fixed_params`` system attr)."""
    return dict(t.system_attrs.get("fixed_params") or t.params)
