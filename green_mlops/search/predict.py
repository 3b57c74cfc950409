"""Predict before training: rank untried points by predicted energy, defer those predicted to be dominated.

The paper's energy predictor (``green-mlops report``'s Lasso, :class:`EnergyPredictor`) is refit on the
study's completed trials — model characteristics (MACs, parameters, size) and batch size → training energy per
sample, and → inference energy per sample — each time a worker picks its next point. Untried points run
cheapest-predicted first (before six trials exist to fit on: largest batch first, then fewest MACs), so a
front forms early and pruning has something to compare against.

Deferral rule (``margin`` m, accuracy margin a): a point is deferred — never trained in this study — when a
completed front trial of accuracy above (best accuracy of the point's architecture so far + a) costs at most
predicted lifecycle energy / (1 + m). Without a trial of the same architecture nothing predicts its accuracy,
so it is never deferred. Each deferral is stored, with its prediction, as the study's user attribute
``green_mlops_deferral:<trial>`` and on the trial (state PRUNED, ``deferred`` attribute); the ranking shows it
as state DEFERRED. Rerun a deferred point in a new study (or without ``--predict-defer-margin``) to check it.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from green_mlops.analysis.errors import AnalysisError
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.argtypes import check_number
from green_mlops.search.objectives import Objective
from green_mlops.search.pruning import FrontPoint

DEFERRAL_PREFIX = "green_mlops_deferral:"
DEFERRED_ATTR = "deferred"
FEATURES = ("macs", "trainable_params", "model_size_bytes", "macs_param", "batch_size")
Features = Callable[[dict[str, Any]], dict[str, Any]]


def check_defer_margin(margin: float | None) -> float | None:
    """The relative energy margin of a deferral, validated (≥ 0), or None for no predictor."""
    if margin is None:
        return None
    return check_number("--predict-defer-margin (a relative energy margin)", margin, positive=False,
                        example="0.5: predicted energy half again the dominating trial's")


class Planner:
    """Ranks and defers untried points with predictors refit on ``completed`` trial rows (see :meth:`refit`)."""

    def __init__(self, features: Features, objective: Objective, margin: float, accuracy_margin: float) -> None:
        self.features, self.objective = features, objective
        self.margin, self.accuracy_margin = margin, accuracy_margin
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

    def refit(self, completed: Iterable[dict[str, Any]]) -> None:
        """Refit on completed trials: dicts with params, ``training_J``, ``steps``, ``inference_J_per_sample``."""
        rows = []
        for r in completed:
            samples = (r.get("steps") or 0) * int(r["batch_size"])
            rows.append({**self.characteristics(r), "arch": r["arch"], "accuracy": r.get("accuracy"),
                         "train_samples": samples, "inference_samples": r.get("inference_samples"),
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

    def predict(self, params: dict[str, Any]) -> dict[str, float] | None:
        """Predicted training, inference-per-sample and lifecycle energy of an untried point (None: no predictor)."""
        if self.train is None or self.inference is None or self._rows.empty:
            return None
        x = self.characteristics(params)
        same = self._rows[self._rows["batch_size"] == float(params["batch_size"])]["train_samples"]
        samples = statistics.median(same if len(same) else self._rows["train_samples"])
        train = max(0.0, float(self.train.predict(x))) * samples
        per_inf = max(0.0, float(self.inference.predict(x)))
        n_inf = int(statistics.median(self._rows["inference_samples"].dropna()) or 0) if "inference_samples" in \
            self._rows and self._rows["inference_samples"].notna().any() else 0
        return {"predicted_training_J": train, "predicted_inference_J_per_sample": per_inf,
                "predicted_lifecycle_J": self.objective.lifecycle_J(train, per_inf, n_inf),
                "predicted_train_samples": float(samples)}

    def rank_key(self, params: dict[str, Any]) -> tuple[float, float]:
        """Sort key: predicted lifecycle energy; before a predictor exists, the largest batch (the cheapest per
        sample) of every architecture first, fewest MACs first: the cheap end of the front, and varied MACs to fit on."""
        p = self.predict(params)
        if p is not None:
            return (p["predicted_lifecycle_J"], 0.0)
        macs = self.characteristics(params).get("macs")
        return (-float(params["batch_size"]), float(macs) if macs is not None else float("inf"))

    def deferral(self, number: int, params: dict[str, Any], points: list[FrontPoint]) -> dict[str, Any] | None:
        """The deferral record for a point predicted dominated by the margin, or None to train it."""
        p = self.predict(params)
        if p is None or self._rows.empty:
            return None
        same = pd.to_numeric(self._rows.loc[self._rows["arch"] == params["arch"], "accuracy"], errors="coerce").dropna()
        if same.empty:
            return None
        best = min(1.0, float(same.max()) + self.accuracy_margin)
        beating = [q for q in points if q.accuracy > best and q.energy_J * (1 + self.margin) <= p["predicted_lifecycle_J"]]
        if not beating:
            return None
        d = max(beating, key=lambda q: (q.accuracy, -q.energy_J))
        return {"trial": number, "params": dict(params), **p, "best_case_accuracy": best, "dominated_by": d.trial,
                "dominator_accuracy": d.accuracy, "dominator_lifecycle_J": d.energy_J, "margin": self.margin,
                "accuracy_margin": self.accuracy_margin, "predictor": self.train.describe() if self.train else "",
                "rule": "deferred: a front trial is more accurate than this architecture's best + accuracy margin "
                        "for predicted lifecycle energy / (1 + margin) or less"}
