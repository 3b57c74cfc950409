"""The steps a metered run keeps for its end-of-run plot: numbers in fixed-size array chunks, not a dict per step.

A run of 100,000 steps with nine metrics kept 62 MB as tuples of dicts of floats (625 bytes a step); as rows of
one float64 array (step, time in ms, then each metric) it keeps 8 bytes per number, 88 a step. Steps and
millisecond times stay exact as float64 (below 2**53). A :class:`StepLog` still reads as a sequence of
:data:`~green_mlops.run.stream.StepMetrics`: a tuple and its dict are built only for the step asked for.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from green_mlops.run.stream import StepBlock, StepMetrics

CHUNK_ROWS = 4096  # rows per chunk: what a run holds beyond its steps is at most one chunk's unused rows


@dataclass
class _Segment:
    """Consecutive steps with one set of metric names (a run has one, unless its metrics change midway)."""

    keys: list[str]
    chunks: list[np.ndarray] = field(default_factory=list)
    n: int = 0

    def rows(self) -> np.ndarray:
        """All rows of this segment as one array (step, time_ms, metrics…)."""
        if not self.chunks:
            return np.empty((0, 2 + len(self.keys)))
        return np.concatenate(self.chunks)[: self.n]


class StepLog(Sequence):
    """Every step a run published, as :data:`StepMetrics` on demand; :meth:`columns` gives them as arrays."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        self._chunk_rows = chunk_rows
        self._segments: list[_Segment] = []
        self._n = 0
        self._lock = threading.Lock()

    def extend(self, batch: Iterable[StepMetrics]) -> None:
        """Append a :class:`StepBlock` (its arrays, copied) or any iterable of :data:`StepMetrics`."""
        if isinstance(batch, StepBlock):
            if len(batch):
                self._append(list(batch.keys), np.column_stack([batch.steps, batch.times_ms, batch.values]))
            return
        for keys, group in itertools.groupby(batch, key=lambda s: tuple(s[2])):
            rows = np.array([[step, ts, *m.values()] for step, ts, m in group], dtype=float)
            self._append(list(keys), rows.reshape(len(rows), 2 + len(keys)))

    def _append(self, keys: list[str], rows: np.ndarray) -> None:
        with self._lock:
            if not self._segments or self._segments[-1].keys != keys:
                self._segments.append(_Segment(keys))
            seg = self._segments[-1]
            done = 0
            while done < len(rows):
                used = seg.n - (len(seg.chunks) - 1) * self._chunk_rows
                if not seg.chunks or used == self._chunk_rows:
                    seg.chunks.append(np.empty((self._chunk_rows, rows.shape[1])))
                    used = 0
                take = min(self._chunk_rows - used, len(rows) - done)
                seg.chunks[-1][used:used + take] = rows[done:done + take]
                seg.n += take
                done += take
            self._n += len(rows)

    def _snapshot(self) -> list[_Segment]:
        """The segments as they are now (rows already written never change, so they are read without the lock)."""
        with self._lock:
            return [_Segment(s.keys, list(s.chunks), s.n) for s in self._segments]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # int -> StepMetrics, slice -> list[StepMetrics]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("step index out of range")
        i %= n
        for seg in self._snapshot():
            if i < seg.n:
                return _metrics(seg.keys, seg.chunks[i // self._chunk_rows][i % self._chunk_rows].tolist())
            i -= seg.n
        raise IndexError("step index out of range")

    def __iter__(self) -> Iterator[StepMetrics]:
        for seg in self._snapshot():
            for k, chunk in enumerate(seg.chunks):
                for row in chunk[: seg.n - k * self._chunk_rows].tolist():
                    yield _metrics(seg.keys, row)

    def columns(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Steps (int64) and each metric's values over all steps (NaN where a step lacked it)."""
        segs = self._snapshot()
        parts = [s.rows() for s in segs]
        steps = np.concatenate([p[:, 0] for p in parts]).astype(np.int64) if parts else np.empty(0, np.int64)
        keys = list(dict.fromkeys(k for s in segs for k in s.keys))
        cols: dict[str, np.ndarray] = {}
        for key in keys:
            cols[key] = np.concatenate([p[:, 2 + s.keys.index(key)] if key in s.keys else np.full(len(p), np.nan)
                                        for s, p in zip(segs, parts)])
        return steps, cols


def _metrics(keys: list[str], row: list[float]) -> StepMetrics:
    return int(row[0]), int(row[1]), dict(zip(keys, row[2:]))


def step_columns(steps: Sequence[StepMetrics]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:meth:`StepLog.columns` of any sequence of :data:`StepMetrics`."""
    if isinstance(steps, StepLog):
        return steps.columns()
    log = StepLog()
    log.extend(steps)
    return log.columns()
