"""The Pareto-front plot of a sweep: accuracy against lifecycle energy, one labelled point per trial."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def pareto_plot(table: pd.DataFrame, path: str | Path, title: str = "") -> Path | None:
    """Scatter of every complete trial, the front joined by a line, the knee ringed; None if nothing to plot."""
    from matplotlib.figure import Figure  # the object API: the user's pyplot backend is left alone

    done = table[(table["state"] == "COMPLETE") & table["accuracy"].notna() & table["lifecycle_J"].notna()]
    if done.empty:
        return None
    fig = Figure(figsize=(8, 5.5))
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
        ax.scatter(knee["lifecycle_J"], knee["accuracy"], s=260, facecolors="none", edgecolors="tab:red",
                   linewidths=2, label="knee", zorder=4)
    for _, r in done.iterrows():
        ax.annotate(f"{r['arch']}/{int(r['batch_size'])}", (r["lifecycle_J"], r["accuracy"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("lifecycle energy (J): training + inference × serving volume")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title or "accuracy vs energy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out
