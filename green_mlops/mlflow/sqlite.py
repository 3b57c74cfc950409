"""MLflow's SQLite tracking store, written as its ``log_batch`` writes it, with the standard library's ``sqlite3``.

For one run's batch of metrics, MLflow's ``SqlAlchemyStore.log_batch`` checks every metric (name, value,
timestamp, step) and refuses the whole batch if one is invalid; checks that the run exists and is active;
inserts each metric into ``metrics``, skipping one already stored with the same key, timestamp, step,
value and NaN flag; and keeps ``latest_metrics`` at each key's newest value, newest being the largest
(step, timestamp, value). :class:`SqliteStore` does the same, in one transaction that takes the write lock
first (``BEGIN IMMEDIATE``, as MLflow locks the rows it compares), executing the inserts many rows at a time
instead of building an ORM object per metric. A database whose two metric tables do not have exactly
MLflow's columns is not touched here: the caller then delivers through MLflow's client.
"""
from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from green_mlops.mlflow.stores import StoreError, invalid_metric
from green_mlops.mlflow.wire import Record

METRIC_COLUMNS = frozenset({"key", "value", "timestamp", "step", "is_nan", "run_uuid"})
_KEYS_PER_QUERY = 500  # as MLflow: bound variables per IN (...) stay well under SQLite's limit
_MAX_FLOAT = 1.7976931348623157e308  # MLflow stores ±inf as ±the largest double, NaN as 0 with is_nan set


def sqlite_path(uri: str) -> str | None:
    """The file of a ``sqlite:///path`` URI; None for what this module leaves to MLflow (memory, options)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or "?" in uri or "%" in uri:
        return None
    path = uri[len(prefix):]
    return None if not path or path == ":memory:" else path


def _sanitize(value: float) -> tuple[int, float]:
    if math.isnan(value):
        return 1, 0.0
    if math.isinf(value):
        return 0, _MAX_FLOAT if value > 0 else -_MAX_FLOAT
    return 0, value


class SqliteStore:
    """Writes metrics into an MLflow SQLite database (see the module docstring)."""

    #: Metrics per transaction. Each one holds the database's write lock, which a training process logging its
    #: own metrics to the same file waits for (SQLite's busy handler sleeps 1, 2, 5, 10 ms ...), and pays a
    #: commit (fsyncs): one transaction a delivery round (a second's metrics) rather than one per 1000.
    max_batch = 50_000

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, uri: str, timeout: float) -> SqliteStore | None:
        """The store of ``uri``; None when MLflow's client must write it (no such file yet, other tables)."""
        path = sqlite_path(uri)
        if path is None:
            return None
        try:  # mode=rw: never create a database (MLflow's client makes one with its schema)
            db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=rw", uri=True, timeout=timeout,
                                 isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError:
            return None
        try:
            ours = all({row[1] for row in db.execute(f"PRAGMA table_info({table})")} == METRIC_COLUMNS
                       for table in ("metrics", "latest_metrics"))
            runs = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        except sqlite3.Error:
            db.close()
            raise
        if not ours or not {"run_uuid", "lifecycle_stage"} <= runs:
            db.close()
            return None
        return cls(db)

    def set_timeout(self, seconds: float) -> None:
        """How long to wait for another writer's lock (the training process's MLflow logger, say)."""
        self.db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    def log_metrics(self, run_id: str, records: Sequence[Record]) -> None:
        """Insert ``records`` into ``metrics`` and bring ``latest_metrics`` up to date, in one transaction."""
        bad = sum(1 for r in records if invalid_metric(r))
        if bad:
            raise StoreError(f"INVALID_PARAMETER_VALUE: {bad} of {len(records)} metrics have an invalid name, "
                             "value, timestamp or step", 400)
        rows = []
        newest: dict[str, tuple[int, int, float, int]] = {}  # key -> (step, timestamp, value, is_nan)
        for key, value, ts, step in records:
            is_nan, v = _sanitize(value)
            rows.append((key, v, ts, run_id, step, is_nan))
            cand = (step, ts, v, is_nan)
            old = newest.get(key)
            if old is None or cand[:3] > old[:3]:
                newest[key] = cand
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            run = db.execute("SELECT lifecycle_stage FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
            if run is None:
                raise StoreError(f"RESOURCE_DOES_NOT_EXIST: Run with id={run_id} not found", 404)
            if run[0] != "active":
                raise StoreError(f"INVALID_PARAMETER_VALUE: The run {run_id} must be in the 'active' state. "
                                 f"Current state is {run[0]}.", 400)
            db.executemany("INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                           "VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._update_latest(run_id, newest)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _update_latest(self, run_id: str, newest: dict[str, tuple[int, int, float, int]]) -> None:
        db = self.db
        keys = sorted(newest)
        stored: dict[str, tuple[int, int, float]] = {}
        for i in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[i:i + _KEYS_PER_QUERY]
            stored.update((k, (s, ts if ts is not None else 0, v)) for k, s, ts, v in db.execute(
                "SELECT key, step, timestamp, value FROM latest_metrics WHERE run_uuid = ? AND key IN "
                f"({','.join('?' * len(chunk))})", (run_id, *chunk)))
        inserts = [(k, newest[k][2], newest[k][1], newest[k][0], newest[k][3], run_id) for k in keys if k not in stored]
        updates = [(n[2], n[1], n[0], n[3], run_id, k) for k in keys if k in stored
                   and (n := newest[k])[:3] > stored[k]]
        if inserts:
            db.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                           "VALUES (?, ?, ?, ?, ?, ?)", inserts)
        if updates:
            db.executemany("UPDATE latest_metrics SET value = ?, timestamp = ?, step = ?, is_nan = ? "
                           "WHERE run_uuid = ? AND key = ?", updates)
