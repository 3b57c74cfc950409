"""The table users read after a sweep: every trial with its Pareto rank, energies and the front's knee."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from green_mlops.search.objectives import accuracy_per_kJ

COLUMNS = ["trial", "state", "feasible", "pareto_rank", "knee", "arch", "batch_size", "lr", "accuracy",
           "training_J", "inference_J_per_sample", "inference_J", "lifecycle_J", "training_Wh", "inference_Wh",
           "lifecycle_Wh", "accuracy_per_kJ", "duration_s", "predicted_training_J", "spent_J", "predicted_lifecycle_J",
           "note", "mlflow_run_id"]


def pareto_ranks(accuracy: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Non-dominated sorting (rank 1 = the front) for maximising accuracy and minimising energy."""
    n = len(accuracy)
    ranks = np.zeros(n, dtype=int)
    remaining = set(range(n))
    rank = 1
    while remaining:
        front = [i for i in remaining
                 if not any((accuracy[j] >= accuracy[i] and energy[j] <= energy[i])
                            and (accuracy[j] > accuracy[i] or energy[j] < energy[i]) for j in remaining)]
        for i in front:
            ranks[i] = rank
        remaining -= set(front)
        rank += 1
    return ranks


#: The rule behind the knee mark, as the summary and the plot state it.
KNEE_RULE = ("the knee: the front point farthest above the line joining its two ends (accuracy vs log-energy, "
             "both scaled to [0, 1])")
NO_KNEE_RULE = ("the best accuracy per kJ, as the front has no knee (fewer than three points, or none above the line "
                "joining its ends)")


def knee(accuracy: np.ndarray, energy: np.ndarray) -> tuple[int | None, str]:
    """The front's knee and the rule that chose it: the point farthest *above* the chord between its ends.

    Accuracy and log10(energy) are scaled to [0, 1] (energy on a log axis, as on the plot, because
    architectures differ in energy by orders of magnitude). Above the chord, a point buys more accuracy per
    decade of energy than the straight trade-off between the ends; a point below it is the worst trade-off
    and never wins. With fewer than three points, or none above the chord, there is no knee: the point with
    the best accuracy per joule is returned with :data:`NO_KNEE_RULE`.
    """
    if len(accuracy) == 0:
        return None, NO_KNEE_RULE
    best_per_J = int(np.argmax(accuracy / np.maximum(energy, 1e-12)))
    if len(accuracy) <= 2:
        return best_per_J, NO_KNEE_RULE
    a = (accuracy - accuracy.min()) / (np.ptp(accuracy) or 1.0)
    log_e = np.log10(np.maximum(energy, 1e-12))
    e = (log_e - log_e.min()) / (np.ptp(log_e) or 1.0)
    order = np.lexsort((a, e))  # by energy; on a tie, the more accurate point is the high end
    p0, p1 = np.array([e[order[0]], a[order[0]]]), np.array([e[order[-1]], a[order[-1]]])
    d = p1 - p0
    norm = math.hypot(*d) or 1.0
    above = (d[0] * (a - p0[1]) - d[1] * (e - p0[0])) / norm  # > 0: above the chord (more accuracy)
    k = int(np.argmax(above))
    if above[k] <= 1e-9:
        return best_per_J, NO_KNEE_RULE
    return k, KNEE_RULE


def knee_index(accuracy: np.ndarray, energy: np.ndarray) -> int | None:
    """Index of the front's knee (see :func:`knee`), or of its best accuracy per joule when it has none."""
    return knee(accuracy, energy)[0]


def ranking_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial, best first: feasible completed trials by Pareto rank then accuracy per kJ.

    ``rows`` carry trial, state, arch, batch_size, lr, accuracy, training_J, inference_J_per_sample,
    inference_samples, lifecycle_J, feasible, ... (see :data:`COLUMNS`).
    """
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan if col not in ("note", "mlflow_run_id", "state", "arch") else ""
    if df.empty:
        return df[COLUMNS]
    for name in ("training", "inference", "lifecycle"):
        df[f"{name}_Wh"] = df[f"{name}_J"] / 3600.0
    df["accuracy_per_kJ"] = [accuracy_per_kJ(a, e) if pd.notna(a) and pd.notna(e) else np.nan
                             for a, e in zip(df["accuracy"], df["lifecycle_J"])]
    df["feasible"] = df["feasible"].fillna(True).astype(bool)
    ok = (df["state"] == "COMPLETE") & df["feasible"] & df["accuracy"].notna() & df["lifecycle_J"].notna()
    df["pareto_rank"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["knee"] = False
    df.attrs["knee_rule"] = ""
    if ok.any():
        sub = df[ok]
        ranks = pareto_ranks(sub["accuracy"].to_numpy(float), sub["lifecycle_J"].to_numpy(float))
        df.loc[ok, "pareto_rank"] = ranks
        front = sub[ranks == 1]
        k, df.attrs["knee_rule"] = knee(front["accuracy"].to_numpy(float), front["lifecycle_J"].to_numpy(float))
        if k is not None:
            df.loc[front.index[k], "knee"] = True
    df["_order"] = np.where(ok, 0, np.where(df["state"] == "COMPLETE", 1, 2))
    df = df.sort_values(["_order", "pareto_rank", "accuracy_per_kJ"], ascending=[True, True, False],
                        na_position="last").drop(columns="_order")
    return df[COLUMNS].reset_index(drop=True)


def format_table(df: pd.DataFrame) -> str:
    """A compact text rendering for the terminal."""
    if df.empty:
        return "(no trials)"
    show = df[["trial", "state", "pareto_rank", "knee", "arch", "batch_size", "lr", "accuracy", "training_J",
               "inference_J", "lifecycle_J", "lifecycle_Wh", "accuracy_per_kJ"]].copy()
    show["knee"] = show["knee"].map({True: "*", False: ""})
    show["state"] = [s if f else f"{s} (over budget)" for s, f in zip(df["state"], df["feasible"])]
    return show.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")

