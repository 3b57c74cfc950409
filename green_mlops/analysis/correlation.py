"""Pearson and Spearman correlation of each metric with energy, per hardware configuration (Table 3).

Groups or metrics with too few runs, and metrics that do not vary, are left out and said so in
``notes``: the tables never hold a NaN coefficient. Repeats of a configuration (same model and batch size)
are averaged first, so ``n`` counts configurations; each coefficient carries its bootstrap 95 % interval
(``*_low``/``*_high``, NaN below :data:`~green_mlops.analysis.uncertainty.MIN_CONFIGS` configurations).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from green_mlops.analysis.errors import TooFewRuns
from green_mlops.analysis.uncertainty import config_means, correlation_interval
from green_mlops.metrics.numbers import numbers

__all__ = ["MIN_RUNS", "PAPER_BATCH_SIZE", "Correlations", "correlations", "one_batch_size"]

MIN_RUNS = 3  # a correlation of two points is always ±1; three is the least that says anything
PAPER_BATCH_SIZE = 128  # Table 3 compares the models at the paper's batch size (Table 2)
COLUMNS = ["hardware", "metric", "n", "pearson_r", "pearson_low", "pearson_high", "pearson_p", "spearman_rho",
           "spearman_low", "spearman_high", "spearman_p"]


@dataclass
class Correlations:
    """Coefficients of each metric with ``target``; ``table`` is long (one row per hardware and metric)."""

    target: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def wide(self, coefficient: str = "spearman_rho") -> pd.DataFrame:
        """Metrics × hardware configurations, as the paper's Table 3 lays them out (metric order kept)."""
        order = list(dict.fromkeys(self.table["metric"]))
        wide = self.table.pivot(index="metric", columns="hardware", values=coefficient)
        return wide.reindex(order)

    def wide_text(self, coefficient: str = "spearman_rho") -> pd.DataFrame:
        """As :meth:`wide`, each cell ``ρ [low, high]`` (the point alone, marked, without an interval)."""
        kind = coefficient.split("_")[0]
        t = self.table.assign(_cell=[
            f"{r[coefficient]:.2f} [{r[kind + '_low']:.2f}, {r[kind + '_high']:.2f}]"
            if np.isfinite(r[kind + "_low"]) else f"{r[coefficient]:.2f} (n = {r['n']}: no interval)"
            for _, r in self.table.iterrows()])
        order = list(dict.fromkeys(t["metric"]))
        return t.pivot(index="metric", columns="hardware", values="_cell").reindex(order)


def one_batch_size(runs: pd.DataFrame, by: str = "hardware") -> tuple[pd.Series, list[str]]:
    """Which runs to correlate: per ``by`` group, those at one batch size, as Table 3 compares models.

    Across batch sizes a model's energy changes several-fold, which would swamp what a metric says about
    the model. The batch size kept is the one with the most models (then most runs, then the closest to
    the paper's 128). Returns a boolean mask over ``runs`` and a note per group where runs were left out.
    """
    keep = pd.Series(True, index=runs.index)
    if "batch_size" not in runs:
        return keep, []
    sizes = pd.to_numeric(runs["batch_size"], errors="coerce")
    models = runs["model"] if "model" in runs else pd.Series(runs.index, index=runs.index)
    notes = []
    for name, idx in (runs.groupby(by, sort=True).groups.items() if by in runs else [("all runs", runs.index)]):
        s = sizes.loc[idx]
        if s.nunique() < 2:
            continue
        count = pd.DataFrame({"models": models.loc[idx].groupby(s).nunique(), "runs": s.value_counts()})
        count["distance"] = -(count.index.to_series() - PAPER_BATCH_SIZE).abs()
        best = count.sort_values(["models", "runs", "distance"], ascending=False).index[0]
        keep.loc[idx] = s.eq(best)
        notes.append(f"{name}: correlations over the {int(count.at[best, 'runs'])} runs at batch size {best:g} "
                     f"({int(count.at[best, 'models'])} models) of {len(idx)}: like Table 3, models are compared at "
                     "one batch size (the batch-size section covers the others)")
    return keep, notes


def correlations(table: pd.DataFrame, target: str, metrics: Sequence[str], by: str | None = "hardware",
                 min_runs: int = MIN_RUNS) -> Correlations:
    """Correlate every column in ``metrics`` with ``target`` within each group of ``by`` (None: all runs).

    Raises :class:`TooFewRuns` when no group has ``min_runs`` runs with both values for any metric.
    """
    if target not in table:
        raise TooFewRuns(f"no run has {target!r}; correlations need it logged (see `green-mlops report --help`)")
    groups = [("all runs", table)] if by is None or by not in table else list(table.groupby(by, sort=True))
    rows, notes = [], []
    for name, g in groups:
        if "model" in g:
            g = config_means(g, [target, *[m for m in metrics if m in g]])
        y = numbers(g[target])
        if y.notna().sum() < min_runs:
            notes.append(f"{name}: {int(y.notna().sum())} run(s) with {target}; correlations need at least "
                         f"{min_runs} (run more configurations on this hardware)")
            continue
        for m in metrics:
            if m not in g or m == target:
                continue
            x = numbers(g[m])
            ok = x.notna() & y.notna()
            n = int(ok.sum())
            if n < min_runs:
                if x.notna().any():
                    notes.append(f"{name}: {m} is known for {n} run(s) with {target}; at least {min_runs} needed")
                continue
            if x[ok].nunique() < 2 or y[ok].nunique() < 2:
                same = target if y[ok].nunique() < 2 else m
                notes.append(f"{name}: {same} is the same in all {n} runs, so it cannot correlate with anything")
                continue
            with warnings.catch_warnings():  # a nearly constant metric: its wide interval says so in the table
                warnings.simplefilter("ignore", stats.NearConstantInputWarning)
                pr = stats.pearsonr(x[ok], y[ok])
                sr = stats.spearmanr(x[ok], y[ok])
            pi, si = correlation_interval(x[ok], y[ok], "pearson"), correlation_interval(x[ok], y[ok], "spearman")
            rows.append([name, m, n, float(pr.statistic), pi.low, pi.high, float(pr.pvalue), float(sr.statistic),
                         si.low, si.high, float(sr.pvalue)])
    out = pd.DataFrame(rows, columns=COLUMNS)
    if out.empty:
        raise TooFewRuns(f"no correlation with {target} can be computed: " + "; ".join(dict.fromkeys(notes))
                         if notes else f"no metric among {', '.join(metrics)} was logged")
    return Correlations(target, out, list(dict.fromkeys(notes)))
