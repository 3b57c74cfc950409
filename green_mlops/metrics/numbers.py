"""What counts as a number in a metric's input, written once for the metric definitions and the analysis.

A metric never turns a missing or broken input into a silent 0 or NaN: the scalar helpers return None for
None, bools, strings (unless ``text``), NaN, infinity and values outside their domain; the column helpers
give NaN where a run has no usable number, so pandas leaves those runs out.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["column", "finite", "nonneg", "number", "numbers", "positive", "ratio", "with_columns"]


def number(v: object, *, text: bool = False) -> float | None:
    """``v`` as a finite float, or None; strings only when ``text`` (MLflow params are strings)."""
    if v is None or isinstance(v, (bool, bytes)) or (isinstance(v, str) and not text):
        return None
    try:
        f = float(v)  # type: ignore[arg-type]  # ints, floats, numpy scalars, 0-d tensors, "12.5"
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def positive(v: object) -> float | None:
    """A finite number > 0 (a denominator or a count that must be there), else None."""
    f = number(v)
    return f if f is not None and f > 0 else None


def nonneg(v: object) -> float | None:
    """A finite number ≥ 0 (a count, an energy gross of idle), else None."""
    f = number(v)
    return f if f is not None and f >= 0 else None


def finite(v: float) -> float | None:
    """``v`` unless the arithmetic that made it overflowed to infinity or NaN."""
    return v if math.isfinite(v) else None


def ratio(a: object, b: object, *, negative_ok: bool = True) -> float | None:
    """``a / b`` for a finite ``a`` (≥ 0 unless ``negative_ok``: net of idle can be below 0) and ``b`` > 0."""
    x, y = (number(a) if negative_ok else nonneg(a)), positive(b)
    return None if x is None or y is None else finite(x / y)


def numbers(values: Any) -> Any:
    """A pandas Series of ``values`` as floats: NaN where a value is no finite number."""
    import numpy as np
    import pandas as pd

    return pd.to_numeric(pd.Series(values) if not isinstance(values, pd.Series) else values,
                         errors="coerce").replace([np.inf, -np.inf], np.nan)


def column(frame: Any, col: str) -> Any:
    """Column ``col`` of a DataFrame as :func:`numbers`; all NaN when the frame has no such column."""
    import pandas as pd

    return numbers(frame[col]) if col in frame else pd.Series(math.nan, index=frame.index, dtype=float)


def with_columns(frame: Any, **cols: Any) -> Any:
    """``frame.assign(**cols)`` built with one ``pd.concat``: a frame of many blocks (``pd.read_csv`` gives one a
    column) is not inserted into column by column, which pandas warns about as "highly fragmented"."""
    import pandas as pd

    new = pd.DataFrame(cols, index=frame.index)
    kept = frame.drop(columns=[c for c in new.columns if c in frame.columns])
    out = pd.concat([kept, new], axis=1)[[*frame.columns, *(c for c in new.columns if c not in frame.columns)]]
    out.attrs = dict(frame.attrs)
    return out
