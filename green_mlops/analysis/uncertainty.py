"""Bootstrap 95 % intervals for the numbers the analysis quotes (scipy.stats.bootstrap, percentile method).

The unit resampled is the configuration (hardware × model × batch size, or request rate): repeats of a configuration are
averaged first (:func:`config_means`), so n counts configurations, and repeats narrow each point without
being counted as independent configurations. Questions within one model (the batch size at the
energy-per-sample minimum, the size where it levels off) resample the repeats within each batch size
instead: with no repeats there is nothing to resample and no interval (:data:`MIN_REPEATS`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from green_mlops import names
from green_mlops.metrics.numbers import numbers

__all__ = ["CONFIG_KEYS", "LEVEL", "MIN_CONFIGS", "MIN_REPEATS", "RESAMPLES", "Interval", "argmin_interval",
           "config_means", "correlation_interval", "median_interval"]

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0  # fixed: the same runs give the same interval
MIN_CONFIGS = 5  # fewer configurations than this: no interval on a correlation or a median across them
MIN_REPEATS = 3  # fewer repeats per batch size than this: no interval on an optimum
CONFIG_KEYS = ("hardware", "model", "batch_size", names.RATE)  # rate_rps: a GenAI request-rate level


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval; ``low``/``high`` are NaN when ``n`` was too small."""

    point: float
    low: float
    high: float
    n: int

    @property
    def known(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def text(self, fmt: str = ".2f") -> str:
        """``0.74 [0.41, 0.90]`` (or the point alone, marked, when there is no interval)."""
        if not math.isfinite(self.point):
            return "n/a"
        if not self.known:
            return f"{self.point:{fmt}} (no interval)"
        return f"{self.point:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}]"


def _nan_interval(point: float, n: int) -> Interval:
    return Interval(point, math.nan, math.nan, n)


def config_means(runs: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """One row per configuration (the :data:`CONFIG_KEYS` present), ``columns`` averaged over its repeats,
    with ``repeats`` counting them. Rows whose ``columns`` are all NaN are left out."""
    keys = [k for k in CONFIG_KEYS if k in runs]
    cols = [c for c in dict.fromkeys(columns) if c in runs and c not in keys]
    df = runs[keys].copy()
    for c in cols:
        df[c] = numbers(runs[c])
    df = df.dropna(subset=cols, how="all")
    if not keys:
        return df.assign(repeats=1).reset_index(drop=True)
    grouped = df.groupby(keys, sort=True, dropna=False)
    return grouped[cols].mean().assign(repeats=grouped.size()).reset_index()


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], paired: bool) -> tuple[float, float]:
    res = stats.bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=RESAMPLES,
                          confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def median_interval(values: Sequence[float] | pd.Series, min_n: int = MIN_CONFIGS) -> Interval:
    """Median with its interval, over independent values (one per configuration)."""
    v = np.asarray(pd.Series(values, dtype=float).dropna())
    point = float(np.median(v)) if len(v) else math.nan
    if len(v) < min_n:
        return _nan_interval(point, len(v))
    if np.ptp(v) == 0:
        return Interval(point, point, point, len(v))
    low, high = _bootstrap((v,), lambda x, axis: np.median(x, axis=axis), paired=False)
    return Interval(point, low, high, len(v))


def _pearson(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    xm = x - x.mean(axis=axis, keepdims=True)
    ym = y - y.mean(axis=axis, keepdims=True)
    den = np.sqrt((xm * xm).sum(axis=axis) * (ym * ym).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xm * ym).sum(axis=axis) / np.where(den > 0, den, 1), np.nan)


def _spearman(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return _pearson(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis)


def correlation_interval(x: Sequence[float] | pd.Series, y: Sequence[float] | pd.Series, kind: str = "spearman",
                         min_n: int = MIN_CONFIGS) -> Interval:
    """Spearman ρ or Pearson r of paired values with its interval (pairs resampled together). Resamples in
    which one side does not vary have no coefficient and are left out of the percentiles."""
    xy = pd.DataFrame({"x": pd.Series(x, dtype=float).to_numpy(), "y": pd.Series(y, dtype=float).to_numpy()}).dropna()
    n = len(xy)
    fn = _spearman if kind == "spearman" else _pearson
    a, b = xy["x"].to_numpy(), xy["y"].to_numpy()
    point = float(np.clip(fn(a, b), -1.0, 1.0)) if n >= 2 else math.nan
    if n < min_n or not math.isfinite(point):
        return _nan_interval(point, n)
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, n, size=(RESAMPLES, n))
    boot = fn(a[idx], b[idx], axis=-1)
    boot = np.clip(boot[np.isfinite(boot)], -1.0, 1.0)  # rounding can put a perfect fit at 1 + 2e-16
    if len(boot) < RESAMPLES // 2:
        return _nan_interval(point, n)
    tail = (1 - LEVEL) / 2 * 100
    return Interval(point, float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail)), n)


def argmin_interval(values: pd.Series, groups: pd.Series, min_repeats: int = MIN_REPEATS) -> tuple[
        Interval, np.ndarray]:
    """The group (a batch size) with the least mean ``values``, and the interval of that group over
    resamples of the repeats within each group. Also returns the bootstrap argmins (for the plateau).

    No interval (NaN bounds) when any group has fewer than ``min_repeats`` values."""
    df = pd.DataFrame({"v": pd.to_numeric(values, errors="coerce"), "g": pd.to_numeric(groups, errors="coerce")})
    df = df.dropna()
    means = df.groupby("g")["v"].mean().sort_index()
    point = float(means.idxmin()) if len(means) else math.nan
    counts = df.groupby("g").size()
    if len(means) < 2 or counts.min() < min_repeats:
        return _nan_interval(point, int(counts.min()) if len(counts) else 0), np.array([])
    rng = np.random.default_rng(SEED)
    boot = np.empty((RESAMPLES, len(means)))
    for j, (_, g) in enumerate(df.groupby("g", sort=True)):
        v = g["v"].to_numpy()
        boot[:, j] = v[rng.integers(0, len(v), size=(RESAMPLES, len(v)))].mean(axis=1)
    sizes = means.index.to_numpy(dtype=float)
    best = sizes[boot.argmin(axis=1)]
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(best, tail, method="lower"), np.percentile(best, 100 - tail, method="higher")
    return Interval(point, float(low), float(high), int(counts.min())), boot
