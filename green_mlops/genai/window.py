"""The steady-window estimator: how many requests a window of time served, counting each by its share in it.

Request i is in service from its send s_i to its end e_i (answer, failure or timeout). Over the
steady window W = [w0, w1] it counts for the fraction of its service time that falls inside W:

    n_W = Σ_i |[s_i, e_i] ∩ W| / (e_i − s_i),        energy per request = E_net(W) / n_W.

In a steady state (arrivals at rate λ, in-flight population constant) E[n_W] = λ·|W|, the same as
the count of completions in W, but without its edge noise: a request straddling w0 or w1 counts
for the part of it the window paid for, so no energy is charged to requests that were not served
in it and the drain's energy never enters. Output tokens are attributed the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def overlap_weights(sent: np.ndarray | pd.Series, end: np.ndarray | pd.Series, w0: float, w1: float) -> np.ndarray:
    """Each request's share (0–1) of its service time [sent, end] inside [w0, w1]; 0 for a missing end."""
    s = np.asarray(sent, dtype=float)
    e = np.asarray(end, dtype=float)
    span = e - s
    inside = np.clip(np.minimum(e, w1) - np.maximum(s, w0), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        instant = ((s >= w0) & (s <= w1) & np.isfinite(e)).astype(float)
        share = np.where(span > 0, inside / span, instant)
    return np.nan_to_num(np.clip(share, 0.0, 1.0), nan=0.0)


def served(requests: pd.DataFrame, w0: float, w1: float) -> float:
    """n_W: the requests the window served, each counted by its share of service time in it."""
    return float(overlap_weights(requests["sent"], requests["end"], w0, w1).sum()) if len(requests) else 0.0


def served_tokens(requests: pd.DataFrame, w0: float, w1: float) -> float:
    """Output tokens attributed to the window, each request's by the same share."""
    if not len(requests):
        return 0.0
    weights = overlap_weights(requests["sent"], requests["end"], w0, w1)
    return float((weights * requests["output_tokens"].to_numpy(dtype=float)).sum())


def completed_in(requests: pd.DataFrame, w0: float, w1: float) -> int:
    """Requests that ended (answered or failed) inside [w0, w1): the simple estimator's denominator."""
    end = requests["end"].to_numpy(dtype=float)
    return int(((end >= w0) & (end < w1)).sum())
