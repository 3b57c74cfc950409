"""A finding's verdict from an interval, never from a point.

Each of the paper's claims is turned into a region of agreement (the paper's ρ ≈ 0.85–0.92 becomes
"ρ ≥ 0.7"; the paper's ≈ 3× becomes "2× to 4×"). The 95 % interval of our estimate then decides:

* **agrees**: the whole interval lies inside the region;
* **differs**: the whole interval lies outside it;
* **cannot tell**: the interval straddles a boundary of the region;
* **too few runs**: no interval could be computed (too few configurations, or no repeats);
* **by construction**: the relation holds because of how the numbers were made (e.g. energy of a device
  estimated as constant power × time is linear in time), so no verdict is given on it.
"""
from __future__ import annotations

import math

from green_mlops.analysis.uncertainty import Interval

__all__ = ["AGREES", "BY_CONSTRUCTION", "CANNOT_TELL", "DIFFERS", "TOO_FEW", "VERDICTS", "judge"]

AGREES, DIFFERS, CANNOT_TELL, TOO_FEW, BY_CONSTRUCTION = (
    "agrees", "differs", "cannot tell", "too few runs", "by construction")
VERDICTS = (AGREES, DIFFERS, CANNOT_TELL, TOO_FEW, BY_CONSTRUCTION)


def judge(interval: Interval, low: float = -math.inf, high: float = math.inf) -> str:
    """The verdict of ``interval`` against the region of agreement [``low``, ``high``]."""
    if not interval.known:
        return TOO_FEW
    if interval.low >= low and interval.high <= high:
        return AGREES
    if interval.high < low or interval.low > high:
        return DIFFERS
    return CANNOT_TELL
