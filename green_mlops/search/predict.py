"""Predict before training: rank untried points by predicted energy, defer those predicted to be dominated.

Energy. Each time a worker picks its next point, the study's trained trials (completed, and pruned ones for the
training energy they drew before the stop) give training and inference energy per sample. An untried point of an
architecture already trained at another batch size is predicted from that measurement, scaled by the median
ratio between the two batch sizes over the other architectures trained at both (uncertainty: the largest
deviation of those ratios from their median). An architecture never trained is predicted by the paper's
predictor (``green-mlops report``'s Lasso, :class:`EnergyPredictor`: model characteristics and batch size →
energy per sample; uncertainty: its cross-validated mean relative error). Untried points run cheapest predicted
first (before six trials exist to fit on: largest batch first, then fewest MACs), so a front forms early.

Accuracy. Nothing predicts the accuracy of an architecture never trained, so its points are never deferred. For
one trained at batch size b0, the nearest to b (its final accuracy, or its accuracy when pruned plus the gain
the pruner granted it: its best case), the best case at batch size b is that accuracy plus the upper quartile
(``GAIN_QUANTILE``) of what moving from b0 to b changed in the other architectures trained at both, read the
same way (at least MIN_ANALOGUES of them; below that, no deferral): more steps per epoch usually help, by an
amount the study measures on itself.

Deferral (relative energy margin m: ``--predict-defer-margin M``, or ``auto`` = the prediction's uncertainty): a
point is deferred — never trained in this study — when a completed front trial costs at most predicted lifecycle
energy / (1 + m) and is at least as accurate as the point's best case (within the pruner's tie). Each deferral
is stored, with its prediction, as the study's user attribute ``green_mlops_deferral:<trial>`` and on the trial
(state PRUNED, ``deferred`` attribute); the ranking shows it as state DEFERRED. Rerun a deferred point in a new
study (or without ``--predict-defer-margin``) to check it.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from green_mlops.analysis.errors import AnalysisError
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.argtypes import check_number
from green_mlops.search.margins import AUTO
from green_mlops.search.objectives import Objective
from green_mlops.search.pruning import FrontPoint

DEFERRAL_PREFIX = "green_mlops_deferral:"
DEFERRED_ATTR = "deferred"
FEATURES = ("macs", "trainable_params", "model_size_bytes", "macs_param", "batch_size")
GAIN_QUANTILE = 0.75
MIN_ANALOGUES = 3
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
        self.train = self.inference = None
        try:
            self.train = EnergyPredictor.fit(self._rows, target="train_J_per_sample", features=feats)
            self.inference = EnergyPredictor.fit(self._rows, target="inference_J_per_sample", features=feats)
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
        return (max(0.0, float(model.predict(self.characteristics(params)))), float(model.summary.cv_mape),
                model.describe())

    def predict(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Predicted training, inference-per-sample and lifecycle energy of an untried point (None: no predictor)."""
        if self.train is None or self.inference is None or self._rows.empty:
            return None
        same = self._rows[self._rows["batch_size"] == float(params["batch_size"])]
        done = self._rows[self._rows["state"] == "COMPLETE"]
        samples = statistics.median((same if len(same) else self._rows)["planned_samples"])
        per_train, u_train, how = self._per_sample(params, "train_J_per_sample", self.train)
        per_inf, u_inf, _ = self._per_sample(params, "inference_J_per_sample", self.inference)
        n_inf = int(statistics.median(done["inference_samples"].dropna()) or 0) if "inference_samples" in done and \
            done["inference_samples"].notna().any() else 0
        return {"predicted_training_J": per_train * samples, "predicted_inference_J_per_sample": per_inf,
                "predicted_lifecycle_J": self.objective.lifecycle_J(per_train * samples, per_inf, n_inf),
                "predicted_train_samples": float(samples), "energy_uncertainty": max(u_train, u_inf),
                "predictor": how}

    def rank_key(self, params: dict[str, Any]) -> tuple[float, float]:
        """Sort key: predicted lifecycle energy; before a predictor exists, the largest batch (the cheapest per
        sample) of every architecture first, fewest MACs first: the cheap end of the front, and varied MACs to fit on."""
        p = self.predict(params)
        if p is not None:
            return (p["predicted_lifecycle_J"], 0.0)
        macs = self.characteristics(params).get("macs")
        return (-float(params["batch_size"]), float(macs) if macs is not None else float("inf"))

    def best_case_accuracy(self, params: dict[str, Any]) -> tuple[float, str] | None:
        """The point's best-case accuracy from its architecture's nearest trained batch size, and how (None:
        unknown)."""
        acc = self._rows.assign(accuracy=pd.to_numeric(self._rows["accuracy"], errors="coerce")).dropna(
            subset=["accuracy"])
        known = acc.pivot_table(index="arch", columns="batch_size", values="accuracy", aggfunc="max")
        b = float(params["batch_size"])
        if params["arch"] not in known.index or b not in known:
            return None
        mine = known.loc[params["arch"]].dropna().drop(index=b, errors="ignore")
        if mine.empty:
            return None
        b0 = min(mine.index, key=lambda x: (abs(np.log(x / b)), -x))  # the nearest batch size (the larger on a tie)
        moves = (known[b] - known[b0]).drop(index=params["arch"]).dropna()
        if len(moves) < MIN_ANALOGUES:
            return None
        gain = max(0.0, float(np.quantile(moves, GAIN_QUANTILE)))
        return (min(1.0, float(mine[b0]) + gain), f"{params['arch']} at batch {b0:g}: {mine[b0]:.4f} + {gain:.4f} "
                f"(upper quartile of batch {b0:g} → {b:g} over {len(moves)} other arch(s))")

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
