"""The Pareto-front plot of a sweep: accuracy against lifecycle energy, one labelled point per trial."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def pareto_figure(table: pd.DataFrame, title: str = "") -> Figure | None:
    """Scatter of every complete trial, the front joined by a line, the knee ringed; None if nothing to plot.

    Built with matplotlib's object API (the user's backend is left alone). The legend sits outside the
    axes, to the right, so it never hides a point or its label.
    """
    done = table[(table["state"] == "COMPLETE") & table["accuracy"].notna() & table["lifecycle_J"].notna()]
    if done.empty:
        return None
    fig = Figure(figsize=(9.5, 5.5))
    ax = fig.subplots()
    feas, infeas = done[done["feasible"]], done[~done["feasible"]]
    ax.scatter(feas["lifecycle_J"], feas["accuracy"], c="tab:blue", label="trial", zorder=3)
    if len(infeas):
        ax.scatter(infeas["lifecycle_J"], infeas["accuracy"], c="lightgrey", marker="x",
                   label="over energy budget", zorder=2)
    front = feas[feas["pareto_rank"] == 1].sort_values("lifecycle_J")
    if len(front):
        ax.plot(front["lifecycle_J"], front["accuracy"], "-", c="tab:green", label="Pareto front", zorder=2)
    knee = feas[feas["knee"]]
    if len(knee):
        rule = table.attrs.get("knee_rule", "")
        label = "knee" if rule.startswith("the knee") else "best accuracy per kJ (front has no knee)"
        ax.scatter(knee["lifecycle_J"], knee["accuracy"], s=260, facecolors="none", edgecolors="tab:red",
                   linewidths=2, label=label, zorder=4)
    log_e = np.log10(done["lifecycle_J"].clip(lower=1e-12))
    middle = (log_e.min() + log_e.max()) / 2
    for (_, r), le in zip(done.iterrows(), log_e):
        right_half = le > middle  # label on the point's inner side, so it stays inside the axes
        ax.annotate(f"{r['arch']}/{int(r['batch_size'])}", (r["lifecycle_J"], r["accuracy"]),
                    textcoords="offset points", xytext=(-5 if right_half else 5, 4),
                    ha="right" if right_half else "left", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("lifecycle energy (J): training + inference × serving volume")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "accuracy vs energy", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
    fig.tight_layout()
    return fig


def pareto_plot(table: pd.DataFrame, path: str | Path, title: str = "") -> Path | None:
    """Write :func:`pareto_figure` to ``path`` (PNG); None if there was nothing to plot."""
    fig = pareto_figure(table, title)
    if fig is None:
        return None
    out = Path(path)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out
