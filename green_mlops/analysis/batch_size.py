"""The batch size at the energy-per-sample minimum, and where energy levels off, per model, with intervals
from resampling the repeats at each batch size (paper §6.1.2, Fig. 7)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from green_mlops import names
from green_mlops.analysis.uncertainty import MIN_REPEATS, argmin_interval
from green_mlops.analysis.verdict import AGREES, CANNOT_TELL, DIFFERS, TOO_FEW
from green_mlops.metrics.numbers import numbers, with_columns

__all__ = ["FALLING", "MINIMUM", "PLATEAU", "RISING", "batch_size_optimum", "describe", "optimum_verdict"]

PLATEAU = 0.10  # sizes past the minimum within 10 % of it: "no further improvement"
FALLING, MINIMUM, RISING = "still falling at the largest size", "minimum inside the range", "rises from the smallest size"
COLUMNS = ["hardware", "model", "sizes", "repeats", "best_batch_size", "best_low", "best_high", "best_J", "trend",
           "plateau", "levels_off_at", "levels_low", "levels_high", "verdict"]


def _levels_off(means: np.ndarray, sizes: np.ndarray) -> float:
    """The smallest size whose energy is within PLATEAU of the minimum: where energy stops falling."""
    return float(sizes[np.argmax(means <= means.min() * (1 + PLATEAU))])


def optimum_verdict(low: float, high: float, smallest: float, largest: float) -> str:
    """Agrees when the whole interval of the best size lies strictly inside the sizes tried; differs when it
    is the smallest size alone (energy rises from there); cannot tell when it reaches the largest size or
    straddles the smallest; too few runs without an interval."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return TOO_FEW
    if low > smallest and high < largest:
        return AGREES
    if high <= smallest:
        return DIFFERS
    return CANNOT_TELL


def batch_size_optimum(runs: pd.DataFrame, energy: str = names.ENERGY_PER_SAMPLE_TRAIN) -> pd.DataFrame:
    """Per hardware and model tried at two or more batch sizes: the size with the least mean ``energy``, its
    interval, the curve's shape, the size where it levels off (within 10 % of the minimum) with its interval,
    and the verdict on "an energy-minimising batch size exists".

    ``repeats`` is the fewest runs at any one size; intervals need :data:`MIN_REPEATS`.
    """
    if "batch_size" not in runs or energy not in runs:
        return pd.DataFrame(columns=COLUMNS)
    df = with_columns(runs, _b=pd.to_numeric(runs["batch_size"], errors="coerce"),
                      _e=numbers(runs[energy]))
    df = df.dropna(subset=["_b", "_e"])
    rows = []
    for (hw, model), g in df.groupby(["hardware", "model"], sort=True):
        by = g.groupby("_b")["_e"].mean().sort_index()
        if len(by) < 2:
            continue
        sizes, means = by.index.to_numpy(dtype=float), by.to_numpy()
        best = float(by.idxmin())
        larger = by[by.index > best]
        trend = FALLING if larger.empty else (RISING if best == by.index[0] else MINIMUM)
        plateau = None if larger.empty else bool((larger <= by.min() * (1 + PLATEAU)).all())
        interval, boot = argmin_interval(g["_e"], g["_b"])
        levels = (math.nan, math.nan)
        if boot.size:
            lv = np.array([_levels_off(b, sizes) for b in boot])
            levels = (float(np.percentile(lv, 2.5, method="lower")), float(np.percentile(lv, 97.5, method="higher")))
        rows.append([hw, model, ", ".join(f"{b:g}" for b in sizes), int(g.groupby("_b").size().min()), best,
                     interval.low, interval.high, float(by.min()), trend, plateau, _levels_off(means, sizes),
                     *levels, optimum_verdict(interval.low, interval.high, sizes[0], sizes[-1])])
    return pd.DataFrame(rows, columns=COLUMNS)


def describe(row: pd.Series) -> str:
    """One model's line in the finding: best size with its interval, the shape, where it levels off."""
    best = f"best {row.best_batch_size:g}"
    if math.isfinite(row.best_low):
        best += f" [{row.best_low:g}, {row.best_high:g}]"
        levels = f"; levels off at {row.levels_off_at:g} [{row.levels_low:g}, {row.levels_high:g}]"
    else:
        best += f" (no interval: {row.repeats} run(s) per size, {MIN_REPEATS} needed)"
        levels = f"; levels off at {row.levels_off_at:g}"
    return f"{row.model} on {row.hardware}: {best} of {row.sizes} ({row.trend}{levels}) → {row.verdict}"
