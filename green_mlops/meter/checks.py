"""Checks of user input, written once for the meter and everything above it (:mod:`green_mlops.argtypes`
re-exports them beside the argparse types). They live in the bottom layer because the meter checks its own
input too. Every message names what a valid value looks like; ``error`` lets a caller raise its own
``ValueError`` (or other) type, so its users can catch one kind of error.
"""
from __future__ import annotations

import math
import numbers
from typing import Any


def check_whole(name: str, value: Any, minimum: int, allow_none: bool = False, *,
                error: type[Exception] = ValueError) -> int | None:
    """``value`` if it is a whole number ≥ ``minimum`` (None too when ``allow_none``); else ``error``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise error(f"{name} must be a whole number ≥ {minimum}; got {value!r}")
    return int(value)


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_seconds(name: str, value: Any, *, positive: bool = False, example: str = "5",
                  error: type[Exception] = ValueError) -> float:
    """``value`` as float if it is a finite number of seconds ≥ 0 (> 0 when ``positive``); else ``error``."""
    if not _finite(value) or value < 0 or (positive and value == 0):
        raise error(f"{name} must be {'more than 0' if positive else '0 or more'} seconds (e.g. {example}); "
                    f"got {value!r}")
    return float(value)


def check_number(name: str, value: Any, *, positive: bool, example: str,
                 error: type[Exception] = ValueError) -> float:
    """``value`` as float if it is a finite number ≥ 0 (> 0 when ``positive``); else ``error``."""
    if not _finite(value) or value < 0 or (positive and value == 0):
        raise error(f"{name} must be a {'positive' if positive else 'non-negative'} number "
                    f"(e.g. {example}); got {value!r}")
    return float(value)
