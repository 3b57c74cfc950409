"""Turn a source's samples into cumulative energy, and read it at any instant.

Counter anchors are exact; between two anchors the increment is spread along the power curve
(trapezoids of the sampled power), so a window shorter than the counter's update still gets its
share, and consecutive windows add up to the whole: nothing is lost or counted twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EnergyCurve:
    """Cumulative energy ``e`` (J) at sample times ``t`` and the power ``p`` (W) that shapes it."""

    t: np.ndarray
    p: np.ndarray
    e: np.ndarray
    final_until: float
    gap_s: float
    filled: np.ndarray | None = None

    def gap_between(self, start: float, end: float) -> float:
        """Seconds within [start, end] whose power was interpolated over failed reads."""
        if self.filled is None or not self.filled.any() or len(self.t) < 2:
            return 0.0
        bad = self.filled[1:] | self.filled[:-1]
        lo = np.clip(self.t[:-1], start, end)
        hi = np.clip(self.t[1:], start, end)
        return float(((hi - lo) * bad).sum())

    def power_at(self, when: np.ndarray | float) -> np.ndarray:
        """The power curve (W) at arbitrary times, linear between samples."""
        if len(self.t) == 0:
            return np.full(np.shape(np.atleast_1d(when)), np.nan)
        return np.interp(np.atleast_1d(np.asarray(when, dtype=float)), self.t, self.p)

    def at(self, when: np.ndarray | float) -> np.ndarray:
        """Cumulative energy at arbitrary times, apportioned inside an interval by the power curve."""
        t, p, e = self.t, self.p, self.e
        q = np.atleast_1d(np.asarray(when, dtype=float))
        if len(t) == 0:
            return np.full(q.shape, np.nan)
        if len(t) == 1:
            return np.full(q.shape, e[0])
        q = np.clip(q, t[0], t[-1])
        k = np.clip(np.searchsorted(t, q, side="right") - 1, 0, len(t) - 2)
        dt = t[k + 1] - t[k]
        s = q - t[k]
        p0, p1 = p[k], p[k + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            part = p0 * s + (p1 - p0) * s * s / (2 * dt)
            whole = (p0 + p1) * dt / 2
            frac = np.where((whole > 0) & np.isfinite(whole), part / whole, s / dt)
            frac = np.where(dt > 0, frac, 1.0)
        return e[k] + (e[k + 1] - e[k]) * np.clip(frac, 0.0, 1.0)


def merge_curve(t: np.ndarray, p: np.ndarray, anchors: np.ndarray, ct: np.ndarray, cp: np.ndarray,
                lag: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Put ticks, fine power samples ``(ct, cp)`` and lagged anchors on one time grid for :func:`integrate`.

    Inside the span the fine samples cover, they give the power; outside it the tick power does.
    An anchor read at tick ``t`` describes the energy up to ``t - lag`` (a counter that updates
    every U seconds at an unknown phase is, on average, U/2 old) and is placed there. The fourth
    array marks grid points whose power was interpolated over failed tick reads.
    """
    has = np.isfinite(anchors)
    at = t[has] - lag
    grid = np.union1d(np.union1d(t, ct), at)
    tick_p, _ = fill_gaps(t, p)
    tick_power = np.interp(grid, t, tick_p) if np.isfinite(p).any() else np.full(len(grid), np.nan)
    bad = ~np.isfinite(p)
    k = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(t) - 1)
    filled = bad[k] | bad[np.minimum(k + 1, len(t) - 1)]
    if len(ct) >= 2:
        inside = (grid >= ct[0]) & (grid <= ct[-1])
        power = np.where(inside, np.interp(grid, ct, cp), tick_power)
        filled &= ~inside
    else:
        power = tick_power
    a = np.full(len(grid), np.nan)
    a[np.searchsorted(grid, at)] = anchors[has]
    return grid, power, a, filled


def fill_gaps(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, float]:
    """Power with NaNs linearly interpolated from valid neighbours, and the seconds so filled."""
    bad = ~np.isfinite(p)
    if not bad.any():
        return p, 0.0
    good = ~bad
    if not good.any():
        return np.zeros_like(p), float(t[-1] - t[0]) if len(t) > 1 else 0.0
    filled = p.copy()
    filled[bad] = np.interp(t[bad], t[good], p[good])
    spans = np.diff(t)
    gap = float(spans[bad[1:] | bad[:-1]].sum()) if len(t) > 1 else 0.0
    return filled, gap


def integrate(t: np.ndarray, p: np.ndarray, anchors: np.ndarray, filled: np.ndarray | None = None) -> EnergyCurve:
    """Cumulative energy at each sample from power ``p`` and counter ``anchors`` (NaN = no read).

    Before the first anchor and after the last, energy follows the trapezoidal integral of power;
    energy after the last anchor is provisional (``final_until`` says where exact data ends).
    """
    t = np.asarray(t, dtype=float)
    p_raw = np.asarray(p, dtype=float)
    a = np.asarray(anchors, dtype=float)
    n = len(t)
    idx = np.flatnonzero(np.isfinite(a))
    if n == 0:
        return EnergyCurve(t, p_raw, np.zeros(0), float("nan"), 0.0)
    p_f, gap = fill_gaps(t, p_raw)
    if filled is None:
        filled = ~np.isfinite(p_raw)
    elif filled.any() and len(t) > 1:
        gap = float(np.diff(t)[filled[1:] | filled[:-1]].sum())
    inc = (p_f[1:] + p_f[:-1]) / 2 * np.diff(t)
    if len(idx) == 0:
        e = np.concatenate([[0.0], np.cumsum(inc)])
        return EnergyCurve(t, p_f, e, t[-1], gap, filled)
    e = np.empty(n)
    first, last = idx[0], idx[-1]
    e[first] = a[first]
    if first > 0:  # before the first anchor: back-extrapolate along the curve
        e[:first] = a[first] - np.cumsum(inc[:first][::-1])[::-1]
    if last > first:
        _spread(t, inc, a, idx, e)
    if last < n - 1:
        e[last + 1:] = a[last] + np.cumsum(inc[last:])
    return EnergyCurve(t, p_f, e, float(t[last]), gap, filled)


def _spread(t: np.ndarray, inc: np.ndarray, a: np.ndarray, idx: np.ndarray, e: np.ndarray) -> None:
    """Fill ``e`` between anchors: each anchor-to-anchor increment follows the power increments."""
    first, last = idx[0], idx[-1]
    seg_inc = inc[first:last]
    seg_dt = np.diff(t[first:last + 1])
    starts = idx[:-1] - first
    seg_of = np.repeat(np.arange(len(starts)), np.diff(idx))
    tot_inc = np.add.reduceat(seg_inc, starts)[seg_of]
    tot_dt = np.add.reduceat(seg_dt, starts)[seg_of]
    use_power = np.isfinite(tot_inc) & (tot_inc > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(use_power, seg_inc / np.where(use_power, tot_inc, 1.0),
                     seg_dt / np.where(tot_dt > 0, tot_dt, 1.0))
    cw = np.cumsum(w)
    base = np.concatenate([[0.0], cw])[starts][seg_of]
    within = cw - base
    delta = (a[idx[1:]] - a[idx[:-1]])[seg_of]
    e[first + 1:last + 1] = a[idx[:-1]][seg_of] + delta * within
    e[idx] = a[idx]
