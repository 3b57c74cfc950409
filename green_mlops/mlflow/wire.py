"""Metrics on their way from the training process to its delivery process: single records, and blocks of steps.

A :class:`Block` is how per-step metrics travel: the metric names once, then each step's number,
timestamp and row of values packed as 64-bit numbers. The training process builds no Python object per
metric for it (numpy packs the arrays the step stream already has, and pickling bytes is a copy); the
delivery process unpacks it with the standard library's ``array``, without numpy.
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

Record = tuple[str, float, int, int]  # key, value, timestamp in ms, step


class Block:
    """Metrics of consecutive steps: ``keys`` × (step, timestamp in ms, one finite value per key)."""

    __slots__ = ("keys", "steps", "timestamps", "values")

    def __init__(self, keys: Sequence[str], steps: bytes, timestamps: bytes, values: bytes) -> None:
        self.keys = tuple(keys)
        self.steps, self.timestamps, self.values = steps, timestamps, values

    @classmethod
    def pack(cls, keys: Sequence[str], steps: Any, timestamps_ms: Any, values: Any) -> Block | None:
        """A block of ``values`` (steps × keys); None when a value is not finite (MLflow takes finite numbers only)."""
        import numpy as np

        v = np.ascontiguousarray(values, dtype=np.float64)
        s = np.ascontiguousarray(steps, dtype=np.int64)
        t = np.ascontiguousarray(timestamps_ms, dtype=np.int64)
        if v.ndim != 2 or v.shape != (len(s), len(keys)) or t.shape != s.shape:
            raise ValueError(f"values must be steps × keys: got {v.shape} for {len(s)} steps, "
                             f"{len(t)} timestamps and {len(keys)} keys")
        if not np.isfinite(v).all():
            return None
        return cls(keys, s.tobytes(), t.tobytes(), v.tobytes())

    def __len__(self) -> int:
        """The number of metrics (steps × keys)."""
        return len(self.values) // 8

    def packed(self) -> tuple[tuple[str, ...], bytes, bytes, bytes]:
        """What goes over the pipe: plain types only, so the other side needs no class of ours to unpickle it."""
        return self.keys, self.steps, self.timestamps, self.values

    def records(self) -> list[Record]:
        """The block as single records, step by step, in the order of ``keys``."""
        steps, stamps, values = array("q"), array("q"), array("d")
        steps.frombytes(self.steps)
        stamps.frombytes(self.timestamps)
        values.frombytes(self.values)
        keys, n = self.keys, len(self.keys)
        out: list[Record] = []
        for i, (step, ts) in enumerate(zip(steps, stamps)):
            out.extend(zip(keys, values[i * n:(i + 1) * n], (ts,) * n, (step,) * n))
        return out


def as_records(item: list[Record] | Block) -> list[Record]:
    """Single records of a batch of records or of a block."""
    return item.records() if isinstance(item, Block) else item
