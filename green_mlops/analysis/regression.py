"""Energy prediction without a meter (the paper's §7): Lasso regression on features known before a run.

    predictor = EnergyPredictor.fit(runs)                  # runs: the table of load_runs()
    predictor.save("energy_predictor.joblib")
    EnergyPredictor.load("energy_predictor.joblib").predict({"macs": 5.6e8, "trainable_params": 1.1e7, ...})

Features are standardised (numbers; missing values imputed by the median) or one-hot encoded (the
hardware label), the penalty is chosen by cross-validation (``LassoCV``), and the error is measured
by an outer cross-validation, so it is the error on runs the model did not see. Importance of a
feature: its share of the absolute standardised coefficients.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LassoCV
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from green_mlops import names
from green_mlops.analysis.errors import AnalysisError, TooFewRuns
from green_mlops.metrics import paper as metrics

__all__ = ["CANDIDATE_FEATURES", "DEFAULT_TARGET", "MIN_RUNS", "EnergyPredictor", "FitSummary"]

MIN_RUNS = 6  # an outer 3-fold CV around an inner 3-fold one needs at least this many runs
DEFAULT_TARGET = names.ENERGY_PER_SAMPLE_TRAIN
#: Known before a run: model characteristics, hyperparameters and how much data goes through.
CANDIDATE_FEATURES: tuple[str, ...] = (
    "macs", "flops", "trainable_params", "total_params", "model_size_bytes", "buffer_bytes", "macs_param",
    "model_size_to_ram", "batch_size", "lr", "train_samples", "inference_samples",
)
_FORMAT = "green_mlops.energy_predictor/1"


@dataclass
class FitSummary:
    """How well the predictor does on runs it did not see, and what it relies on."""

    target: str
    n_runs: int
    folds: int
    alpha: float
    cv_mae: float
    cv_mape: float
    cv_r2: float
    importances: pd.Series  # share of |standardised coefficient| per encoded feature, sums to 1 (or all 0)
    notes: list[str] = field(default_factory=list)


def _with_derived(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``macs_param`` and ``model_size_to_ram`` from their inputs where they are not given."""
    df = df.copy()
    pairs = {"macs_param": (metrics.macs_param, "macs", "trainable_params"),
             "model_size_to_ram": (metrics.model_size_to_ram, "model_size_bytes", "ram_bytes")}
    for name, (fn, a, b) in pairs.items():
        if a in df and b in df:
            derived = pd.Series([fn(x, y) for x, y in zip(df[a], df[b])], index=df.index, dtype=float)
            df[name] = pd.to_numeric(df[name], errors="coerce").fillna(derived) if name in df else derived
    return df


def _choose_features(df: pd.DataFrame) -> list[str]:
    out = []
    for c in CANDIDATE_FEATURES:
        if c in df:
            x = pd.to_numeric(df[c], errors="coerce")
            if x.notna().mean() >= 0.5 and x.nunique() >= 2:
                out.append(c)
    return out


class EnergyPredictor:
    """A fitted Lasso pipeline that estimates ``target`` for a configuration, run or not."""

    def __init__(self, pipeline: Pipeline, features: list[str], categorical: list[str], target: str,
                 summary: FitSummary, categories: dict[str, list[str]]) -> None:
        self.pipeline = pipeline
        self.features = features
        self.categorical = categorical
        self.target = target
        self.summary = summary
        self.categories = categories

    @classmethod
    def fit(cls, runs: pd.DataFrame, target: str = DEFAULT_TARGET, features: Sequence[str] | None = None,
            categorical: Sequence[str] | None = None, min_runs: int = MIN_RUNS, seed: int = 0) -> EnergyPredictor:
        """Fit on the runs that have ``target``. Defaults: every candidate feature that varies and is known
        for at least half the runs; the ``hardware`` label one-hot encoded when there are several."""
        df = _with_derived(runs)
        if target not in df:
            raise TooFewRuns(f"no run has {target!r}, the energy to predict; pick one that was logged")
        df = df[pd.to_numeric(df[target], errors="coerce").notna()]
        n = len(df)
        if n < min_runs:
            raise TooFewRuns(f"energy regression needs at least {min_runs} runs with {target}; there are {n} "
                             "(run more configurations, e.g. a longer sweep)")
        feats = list(features) if features is not None else _choose_features(df)
        cats = list(categorical) if categorical is not None else (
            ["hardware"] if "hardware" in df and df["hardware"].nunique() > 1 else [])
        missing = [c for c in feats + cats if c not in df]
        if missing:
            raise AnalysisError(f"features not in the runs: {', '.join(missing)}; known columns include "
                                f"{', '.join(c for c in CANDIDATE_FEATURES if c in df)}")
        if not feats and not cats:
            raise TooFewRuns(f"no feature varies across the {n} runs (model characteristics and batch size are "
                             "all the same): vary the architecture or batch size to learn anything")
        x = df[feats + cats].copy()
        x[feats] = x[feats].apply(pd.to_numeric, errors="coerce")
        x[cats] = x[cats].astype(str)
        y = pd.to_numeric(df[target]).to_numpy(dtype=float)
        pipe = _pipeline(feats, cats, n, seed)
        folds = min(5, n // 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pred = cross_val_predict(pipe, x, y, cv=KFold(folds, shuffle=True, random_state=seed))
            pipe.fit(x, y)
        lasso: LassoCV = pipe.named_steps["lasso"]
        names = [n.split("__", 1)[1] for n in pipe.named_steps["prep"].get_feature_names_out()]
        weights = pd.Series(np.abs(lasso.coef_), index=names)
        total = float(weights.sum())
        importances = (weights / total if total > 0 else weights).sort_values(ascending=False)
        notes = [] if total > 0 else ["Lasso kept no feature: it predicts the mean; these features do not explain "
                                      f"{target} across these runs"]
        summary = FitSummary(target, n, folds, float(lasso.alpha_), float(mean_absolute_error(y, pred)),
                             float(mean_absolute_percentage_error(y, pred)), float(r2_score(y, pred)),
                             importances, notes)
        categories = {c: sorted(x[c].unique().tolist()) for c in cats}
        return cls(pipe, feats, cats, target, summary, categories)

    def predict(self, config: Mapping[str, Any] | pd.DataFrame) -> float | np.ndarray:
        """``target`` for one configuration (a mapping: a float) or several (a DataFrame: an array).

        Every numeric feature must be given (``macs_param`` and ``model_size_to_ram`` are derived from
        ``macs``/``trainable_params`` and ``model_size_bytes``/``ram_bytes`` when absent).
        """
        single = not isinstance(config, pd.DataFrame)
        df = _with_derived(pd.DataFrame([dict(config)]) if single else config)
        missing = [c for c in self.features + self.categorical if c not in df or df[c].isna().any()]
        if missing:
            raise AnalysisError(f"the configuration lacks {', '.join(missing)}; this predictor needs "
                                f"{', '.join(self.features + self.categorical)} (model characteristics come from "
                                "green_mlops.metrics.model_stats.model_stats(model, example_input).as_params())")
        x = df[self.features + self.categorical].copy()
        x[self.features] = x[self.features].apply(pd.to_numeric, errors="coerce")
        for c in self.categorical:
            x[c] = x[c].astype(str)
            unknown = sorted(set(x[c]) - set(self.categories.get(c, [])))
            if unknown:
                warnings.warn(f"{c} {unknown} was not among the runs the predictor learned from "
                              f"({self.categories.get(c)}); its effect is taken as zero", stacklevel=2)
        out = self.pipeline.predict(x)
        return float(out[0]) if single else out

    def save(self, path: str | Path) -> Path:
        """Write the predictor with joblib (a pickle: load only files you wrote or trust)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": _FORMAT, "pipeline": self.pipeline, "features": self.features,
                     "categorical": self.categorical, "target": self.target, "summary": self.summary,
                     "categories": self.categories}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EnergyPredictor:
        """Read a predictor written by :meth:`save`."""
        blob = joblib.load(Path(path))
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise AnalysisError(f"{path} is not a green_mlops energy predictor (write one with EnergyPredictor.save)")
        return cls(blob["pipeline"], blob["features"], blob["categorical"], blob["target"], blob["summary"],
                   blob["categories"])

    def describe(self) -> str:
        """One paragraph: what it predicts, from what, and how well on unseen runs."""
        s = self.summary
        top = ", ".join(f"{k} {v:.0%}" for k, v in s.importances.head(6).items() if v >= 0.005) or "none"
        mape = f"{s.cv_mape:.0%}" if math.isfinite(s.cv_mape) and s.cv_mape < 1e6 else "n/a"
        return (f"Lasso predicting {s.target} from {len(self.features) + len(self.categorical)} feature(s) over "
                f"{s.n_runs} runs: {s.folds}-fold cross-validated MAE {s.cv_mae:.4g}, MAPE {mape}, R² {s.cv_r2:.2f}; "
                f"alpha {s.alpha:.3g}; importances: {top}.")


def _pipeline(numeric: list[str], categorical: list[str], n: int, seed: int) -> Pipeline:
    steps = []
    if numeric:
        steps.append(("num", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                      numeric))
    if categorical:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    inner = 3 if n < 15 else 5
    return Pipeline([("prep", ColumnTransformer(steps)),
                     ("lasso", LassoCV(cv=KFold(inner, shuffle=True, random_state=seed), max_iter=20000,
                                       random_state=seed))])
