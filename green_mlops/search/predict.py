"""Predict before training: rank untried points by predicted energy, defer those predicted to be dominated.

Energy. Each time a worker picks its next point, the study's trained trials (completed, and pruned ones for the
training energy they drew before the stop) give training and inference energy per sample. An untried point of an
architecture already trained at another batch size is predicted from that measurement, scaled by the median
ratio between the two batch sizes over the other architectures trained at both (uncertainty: the largest
deviation of those ratios from their median). An architecture never trained is predicted by the paper's
predictor (``green-mlops report``'s Lasso, :class:`EnergyPredictor`: model characteristics and batch size →
energy per sample), fitted on logarithms (energy scales multiplicatively with size, and a linear fit on the raw
joules can predict a small model near or below zero, which ranks it first); uncertainty: its cross-validated
mean absolute error as a factor. Among the characteristics is the cost proxy ``activation_elements`` (what a
training step writes and reads back: :func:`green_mlops.metrics.model_stats.activation_elements`). Untried points
run cheapest predicted first (before six trials exist to fit on: largest batch first, then the fewest activation
elements, else MACs), so a front forms early.

Accuracy. Nothing predicts the accuracy of an architecture never trained, so its points are never deferred. For
one trained at batch size b0, the nearest to b with at least MIN_ANALOGUES analogues (its final accuracy, or its
accuracy when pruned plus the gain the pruner granted it: its best case), the best case at batch size b is that
accuracy with its error rate reduced by a one-sided prediction bound on what moving from b0 to b did to the error
rates of the n other architectures trained at both, read the same way: the k-th smallest of their reductions in
log error rate, k = ⌈(n + 1) · GAIN_QUANTILE⌉ (at most n), which a new architecture's reduction exceeds with
probability ≤ 1 − GAIN_QUANTILE whatever their distribution. With few analogues that is their largest (the plain
upper quartile of six is exceeded about a third of the time; it deferred SimpleDLA on the H200 grid). Error rates, not
accuracies: a model at 0.99 cannot gain what one at 0.87 gains, while halving the errors is possible for both;
on the H200 grid the bound has the same coverage either way and is half as loose (median 0.003 above the truth
against 0.008). More steps per epoch usually help, by an amount the study measures on itself.

Deferral (relative energy margin m: ``--predict-defer-margin M``, or ``auto`` = the prediction's uncertainty): a
point is deferred — never trained in this study — when a completed front trial costs at most predicted lifecycle
energy / (1 + m) and is at least as accurate as the point's best case (within the pruner's tie). Each deferral
is stored, with its prediction, as the study's user attribute ``green_mlops_deferral:<trial>`` and on the trial
(state PRUNED, ``deferred`` attribute); the ranking shows it as state DEFERRED. Rerun a deferred point in a new
study (or without ``--predict-defer-margin``) to check it.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from green_mlops import names
from green_mlops.analysis.errors import AnalysisError
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.argtypes import check_number
from green_mlops.search.margins import AUTO
from green_mlops.search.objectives import Objective
from green_mlops.search.pruning import FrontPoint

DEFERRAL_PREFIX = "green_mlops_deferral:"
DEFERRED_ATTR = "deferred"
FEATURES = ("macs", "trainable_params", "model_size_bytes", "macs_param", "batch_size", names.ACTIVATION_ELEMENTS)
LOG = "log_"  # the columns the Lasso is fitted on: logarithms of positive features and targets
GAIN_QUANTILE = 0.8
MIN_ANALOGUES = math.ceil(GAIN_QUANTILE / (1 - GAIN_QUANTILE) - 1e-9)  # fewer cannot reach the coverage even at their max
ERROR_FLOOR = 1e-4  # error rates are compared on a log scale; a perfect score counts as one error in 10,000
Features = Callable[[dict[str, Any]], dict[str, Any]]
Tolerance = Callable[[FrontPoint, float], float]


def check_defer_margin(margin: float | str | None) -> float | str | None:
    """The relative energy margin of a deferral (≥ 0, or "auto"), validated, or None for no predictor."""
    if margin is None or margin == AUTO:
        return margin
    try:
        value = float(margin) if isinstance(margin, str) else margin
    except ValueError:
        value = margin
    return check_number("--predict-defer-margin ('auto' or a relative energy margin)", value, positive=False,
                        example="0.5: predicted energy half again the dominating trial's")


def prediction_bound(values: np.ndarray, coverage: float) -> tuple[int, float]:
    """(k, the k-th smallest value): a new draw from the same distribution exceeds it with probability
    (n + 1 − k) / (n + 1) ≤ 1 − ``coverage`` (distribution-free; k = n, the largest, when n is too small)."""
    ordered = np.sort(values)
    k = min(len(ordered), math.ceil((len(ordered) + 1) * coverage))
    return k, float(ordered[k - 1])


def _logs(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with ``log_<c>`` = ln(c) for each column (NaN where c is missing or not positive)."""
    out = frame.copy()
    for c in columns:
        x = pd.to_numeric(out[c], errors="coerce") if c in out else pd.Series(np.nan, index=out.index)
        out[LOG + c] = np.log(x.where(x > 0))
    return out


class Planner:
    """Ranks and defers untried points with predictions refit on the study's trained trials (:meth:`refit`)."""

    def __init__(self, features: Features, objective: Objective, margin: float | str) -> None:
        self.features, self.objective, self.margin = features, objective, margin
        self._cache: dict[str, dict[str, Any]] = {}
        self.train: EnergyPredictor | None = None
        self.inference: EnergyPredictor | None = None
        self.why_not: str = "not fitted yet"
        self._rows: pd.DataFrame = pd.DataFrame()

    def characteristics(self, params: dict[str, Any]) -> dict[str, Any]:
        """Model characteristics of a point (cached per architecture) plus its hyperparameters."""
        arch = str(params["arch"])
        if arch not in self._cache:
            self._cache[arch] = dict(self.features(params))
        stats = self._cache[arch]
        out = {**stats, "batch_size": float(params["batch_size"]), "lr": float(params.get("lr", 0.0))}
        if stats.get("macs") and stats.get("trainable_params"):
            out["macs_param"] = float(stats["macs"]) / float(stats["trainable_params"])
        return out

    def refit(self, trained: Iterable[dict[str, Any]]) -> None:
        """Refit on trained trials: dicts with params, ``state``, ``accuracy`` (a completed trial's final one, a
        pruned trial's best case), ``training_J``, ``steps`` (``planned_steps`` of a pruned one),
        ``inference_J_per_sample``, ``inference_samples``."""
        rows = []
        for r in trained:
            samples = (r.get("steps") or 0) * int(r["batch_size"])
            rows.append({**self.characteristics(r), "arch": r["arch"], "state": r.get("state", "COMPLETE"),
                         "accuracy": r.get("accuracy"), "train_samples": samples,
                         "planned_samples": (r.get("planned_steps") or r.get("steps") or 0) * int(r["batch_size"]),
                         "inference_samples": r.get("inference_samples"),
                         "train_J_per_sample": r["training_J"] / samples if samples and r.get("training_J") else None,
                         "inference_J_per_sample": r.get("inference_J_per_sample")})
        self._rows = pd.DataFrame(rows)
        feats = [f for f in FEATURES if f in self._rows and pd.to_numeric(self._rows[f], errors="coerce").nunique() > 1]
        logged = _logs(self._rows, [*feats, "train_J_per_sample", "inference_J_per_sample"])
        self.train = self.inference = None
        try:
            self.train = EnergyPredictor.fit(logged, target=LOG + "train_J_per_sample", features=[LOG + f for f in feats])
            self.inference = EnergyPredictor.fit(logged, target=LOG + "inference_J_per_sample",
                                                 features=[LOG + f for f in feats])
            self.why_not = ""
        except AnalysisError as exc:
            self.why_not = str(exc)

    def _per_sample(self, params: dict[str, Any], target: str, model: EnergyPredictor) -> tuple[float, float, str]:
        """(energy per sample, relative uncertainty, how) of ``target`` for a point."""
        rows = self._rows.dropna(subset=[target])
        b, mine = float(params["batch_size"]), rows[rows["arch"] == params["arch"]]
        for b0, e0 in mine.groupby("batch_size")[target].median().items():
            pairs = rows[rows["batch_size"].isin([b0, b])].pivot_table(index="arch", columns="batch_size",
                                                                          values=target, aggfunc="median")
            if b0 != b and b in pairs and b0 in pairs:
                ratios = (pairs[b] / pairs[b0]).dropna()
                if len(ratios):
                    med = float(ratios.median())
                    return (float(e0) * med, float((ratios / med - 1).abs().max()),
                            f"{params['arch']} at batch {b0:g} × median ratio {med:.3g} over {len(ratios)} arch(s)")
        x = _logs(pd.DataFrame([self.characteristics(params)]), [f[len(LOG):] for f in model.features])
        return (float(np.exp(model.predict(x))[0]), float(np.expm1(model.summary.cv_mae)),
                f"{model.describe()} (on logarithms: × or ÷ {np.exp(model.summary.cv_mae):.2f} on unseen runs)")

    def predict(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Predicted training, inference-per-sample and lifecycle energy of an untried point (None: no predictor)."""
        if self.train is None or self.inference is None or self._rows.empty:
            return None
        same = self._rows[self._rows["batch_size"] == float(params["batch_size"])]
        done = self._rows[self._rows["state"] == "COMPLETE"]
        samples = statistics.median((same if len(same) else self._rows)["planned_samples"])
        try:
            per_train, u_train, how = self._per_sample(params, "train_J_per_sample", self.train)
            per_inf, u_inf, _ = self._per_sample(params, "inference_J_per_sample", self.inference)
        except AnalysisError:  # a characteristic the fit needs is unknown (or not positive) for this point
            return None
        n_inf = int(statistics.median(done["inference_samples"].dropna()) or 0) if "inference_samples" in done and \
            done["inference_samples"].notna().any() else 0
        return {"predicted_training_J": per_train * samples, "predicted_inference_J_per_sample": per_inf,
                "predicted_lifecycle_J": self.objective.lifecycle_J(per_train * samples, per_inf, n_inf),
                "predicted_train_samples": float(samples), "energy_uncertainty": max(u_train, u_inf),
                "predictor": how}

    def rank_key(self, params: dict[str, Any]) -> tuple[float, float]:
        """Sort key: predicted lifecycle energy; before a predictor exists, the largest batch (the cheapest per
        sample) of every architecture first, fewest activation elements (else MACs) first: the cheap end of the front."""
        p = self.predict(params)
        if p is not None:
            return (p["predicted_lifecycle_J"], 0.0)
        stats = self.characteristics(params)
        cost = stats.get(names.ACTIVATION_ELEMENTS) or stats.get("macs")
        return (-float(params["batch_size"]), float(cost) if cost is not None else float("inf"))

    def best_case_accuracy(self, params: dict[str, Any]) -> tuple[float, str] | None:
        """The point's best-case accuracy from its architecture's nearest trained batch size, and how (None:
        unknown)."""
        acc = self._rows.assign(accuracy=pd.to_numeric(self._rows["accuracy"], errors="coerce")).dropna(
            subset=["accuracy"])
        known = acc.pivot_table(index="arch", columns="batch_size", values="accuracy", aggfunc="max")
        b = float(params["batch_size"])
        if params["arch"] not in known.index or b not in known:
            return None
        log_error = np.log((1 - known).clip(lower=ERROR_FLOOR))
        mine = known.loc[params["arch"]].dropna().drop(index=b, errors="ignore")
        for b0 in sorted(mine.index, key=lambda x: (abs(np.log(x / b)), -x)):  # nearest first (the larger on a tie)
            moves = (log_error[b0] - log_error[b]).drop(index=params["arch"]).dropna()  # > 0: fewer errors at b
            if len(moves) >= MIN_ANALOGUES:
                break
        else:
            return None
        k, gain = prediction_bound(moves.to_numpy(float), GAIN_QUANTILE)
        factor = float(np.exp(-max(0.0, gain)))
        return (1 - (1 - float(mine[b0])) * factor, f"{params['arch']} at batch {b0:g}: {mine[b0]:.4f}, its errors × "
                f"{factor:.3f}: the error reduction from batch {b0:g} to {b:g} ranked {k} of {len(moves)} (smallest "
                f"first) over other arch(s), which a new one exceeds with probability ≤ {1 - GAIN_QUANTILE:.0%}")

    def deferral(self, number: int, params: dict[str, Any], points: list[FrontPoint],
                 tolerance: Tolerance | None = None) -> dict[str, Any] | None:
        """The deferral record for a point predicted dominated by the margin, or None to train it."""
        p = self.predict(params)
        acc = self.best_case_accuracy(params) if p is not None else None
        if p is None or acc is None:
            return None
        margin = p["energy_uncertainty"] if self.margin == AUTO else float(self.margin)
        beating = [q for q in points if q.energy_J * (1 + margin) <= p["predicted_lifecycle_J"]
                   and q.accuracy > acc[0] - (tolerance(q, acc[0]) if tolerance else 0.0)]
        if not beating:
            return None
        d = max(beating, key=lambda q: (q.accuracy, -q.energy_J))
        return {"trial": number, "params": dict(params), **p, "best_case_accuracy": acc[0], "accuracy_basis": acc[1],
                "dominated_by": d.trial, "dominator_accuracy": d.accuracy, "dominator_lifecycle_J": d.energy_J,
                "margin": margin, "margin_rule": "auto: the prediction's uncertainty" if self.margin == AUTO else
                "fixed", "rule": "deferred: a front trial at least as accurate as this point's best case (within "
                                 "the tie) costs predicted lifecycle energy / (1 + margin) or less"}
