"""A writer that delivers metrics to an MLflow run in batches, outside the training process, losing none.

The training thread only appends to a queue. A pump thread hands batches over a pipe to a small
delivery process, so MLflow's client work (SQLAlchemy inserts for a local store, JSON and HTTP for
a server) never competes with training for the GIL: measured on an H100, in-process delivery cost
ResNet18 training 9–16 % of its throughput. The delivery process sends ``log_batch`` calls of at most
1000 metrics (MLflow's limit). When the tracking server cannot be reached the batch goes to a spool
file on disk and delivery is retried with backoff; once the server answers, the spool is delivered
first, in order. Requests to an HTTP server use MLflow's own ``http_request`` with no retries and a
short timeout, so a dead server costs seconds, not minutes, and the user's MLFLOW_HTTP_REQUEST_*
settings stay untouched.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from green_mlops.mlflow.spool import Record, Spool, SyncReport, default_spool_dir, read_file

log = logging.getLogger(__name__)
MAX_BATCH = 1000
REQUEST_TIMEOUT_S = 5.0


def _send(tracking_uri: str, run_id: str, records: list[Record]) -> None:
    """Deliver one batch (≤ 1000) or raise."""
    if tracking_uri.startswith(("http://", "https://")):
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request_safe

        body = {"run_id": run_id, "metrics": [{"key": k, "value": v, "timestamp": ts, "step": s}
                                              for k, v, ts, s in records]}
        http_request_safe(get_default_host_creds(tracking_uri), "/api/2.0/mlflow/runs/log-batch", "POST",
                          json=body, max_retries=0, timeout=REQUEST_TIMEOUT_S)
    else:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).log_batch(run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in records])


class _Delivery:
    """Delivers queued records to one run, spooling what cannot be delivered (runs in the child)."""

    def __init__(self, run_id: str, tracking_uri: str, spool: Spool, max_batch: int) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.spool = spool
        self.max_batch = max_batch
        self.queue: collections.deque[Record] = collections.deque()
        self.delivered = 0
        self.last_error: str | None = None
        self._retry_at = 0.0
        self._backoff = 0.5

    def deliver(self, force: bool = False) -> None:
        """Spool first (order), then the queue; on failure the queue goes to the spool."""
        if self.spool.path.exists():
            if (not force and time.monotonic() < self._retry_at) or not self._drain_spool():
                self._to_spool()
                return
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))]
            try:
                _send(self.tracking_uri, self.run_id, batch)
                self.delivered += len(batch)
                self._backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - unreachable, 5xx, timeout: keep it on disk
                self._failed(exc)
                self.spool.append(batch)
                self._to_spool()
                return

    def _drain_spool(self) -> bool:
        pending = self.spool.read()
        while pending:
            batch = pending[: self.max_batch]
            try:
                _send(self.tracking_uri, self.run_id, batch)
            except Exception as exc:  # noqa: BLE001
                self._failed(exc)
                self.spool.keep_only(pending)
                return False
            self.delivered += len(batch)
            pending = pending[self.max_batch:]
        self.spool.keep_only([])
        self._backoff = 0.5
        log.info("green_mlops: tracking server back; spooled metrics of run %s delivered", self.run_id)
        return True

    def _to_spool(self) -> None:
        while self.queue:
            self.spool.append([self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))])

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 30.0)


def _child(conn: Any, run_id: str, tracking_uri: str, spool_dir: str, flush_interval: float, max_batch: int) -> None:
    """The delivery process: receive batches, deliver them, answer flush and close requests."""
    delivery = _Delivery(run_id, tracking_uri, Spool(spool_dir, run_id, tracking_uri), max_batch)
    last = time.monotonic()
    while True:
        try:
            msg = conn.recv() if conn.poll(flush_interval) else None
        except (EOFError, OSError):  # the training process is gone: keep what we have on disk
            delivery.deliver(force=True)
            delivery._to_spool()
            return
        if msg is not None and msg[0] == "m":
            delivery.queue.extend(msg[1])
        due = time.monotonic() - last >= flush_interval or len(delivery.queue) >= max_batch
        if msg is not None and msg[0] in ("flush", "close"):
            delivery.deliver(force=True)
            conn.send(("done", delivery.delivered, len(delivery.spool), delivery.last_error))
            if msg[0] == "close":
                return
        elif due:
            delivery.deliver()
            last = time.monotonic()


@contextlib.contextmanager
def _hidden_main() -> Iterator[None]:
    """Start a spawned child without it importing the user's ``__main__`` script.

    ``multiprocessing``'s spawn re-imports the parent's main module in the child, which would run a
    training script's top-level code a second time. The delivery process needs nothing from it, so
    the main module's file and spec are hidden for the instant ``Process.start()`` reads them.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    missing = object()
    with _MAIN_LOCK:
        saved_file = main.__dict__.pop("__file__", missing)
        saved_spec = main.__dict__.get("__spec__", missing)
        main.__spec__ = None
        try:
            yield
        finally:
            if saved_file is not missing:
                main.__file__ = saved_file
            if saved_spec is missing:
                main.__dict__.pop("__spec__", None)
            else:
                main.__spec__ = saved_spec


_MAIN_LOCK = threading.Lock()


class MetricWriter:
    """Queue metrics from any thread; a separate process delivers them to ``run_id``."""

    def __init__(self, run_id: str, tracking_uri: str | None = None, *, spool_dir: str | Path | None = None,
                 flush_interval: float = 1.0, max_batch: int = MAX_BATCH) -> None:
        import multiprocessing as mp

        import mlflow

        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH} (MLflow's limit); got {max_batch}")
        self.run_id = run_id
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.spool = Spool(spool_dir or default_spool_dir(), run_id, self.tracking_uri)
        self.flush_interval = flush_interval
        self.delivered = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._queue: collections.deque[Record] = collections.deque()
        self._send_lock = threading.Lock()
        self._closed = False
        ctx = mp.get_context("spawn")  # never fork a process that may hold CUDA and threads
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, name="green-mlops-writer", daemon=True,
                                 args=(child_conn, run_id, self.tracking_uri, str(self.spool.path.parent),
                                       flush_interval, max_batch))
        with _hidden_main():
            self._proc.start()
        child_conn.close()
        self._wake = threading.Event()
        self._pump_thread = threading.Thread(target=self._pump_loop, name="green-mlops-writer-pump", daemon=True)
        self._pump_thread.start()

    @property
    def spooled(self) -> int:
        return len(self.spool)

    def log(self, key: str, value: float, step: int, timestamp_ms: int | None = None) -> None:
        """Queue one metric (non-finite values are skipped: MLflow cannot plot them)."""
        if not math.isfinite(value):
            self.skipped += 1
            return
        self._queue.append((key, float(value), int(timestamp_ms or time.time() * 1000), int(step)))

    def log_many(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None:
        ts = int(timestamp_ms or time.time() * 1000)
        for key, value in metrics.items():
            self.log(key, value, step, ts)

    def _pump_loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._pump()

    def _pump(self) -> None:
        """Hand what is queued to the delivery process; if it is gone, spool it here."""
        with self._send_lock:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
                try:
                    self._conn.send(("m", batch))
                except (OSError, ValueError):
                    self.spool.append(batch)

    def _request(self, what: str, timeout: float | None) -> bool:
        self._pump()
        with self._send_lock:
            try:
                self._conn.send((what,))
                if not self._conn.poll(timeout):
                    return False
                _, self.delivered, spooled, self.last_error = self._conn.recv()
            except (OSError, EOFError, ValueError):
                return False
        return spooled == 0

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued so far is delivered or spooled; True when all was delivered."""
        return self._request("flush", timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what can be delivered; anything else stays in the spool for ``green-mlops sync``."""
        if self._closed:
            return
        ok = self._request("close", timeout)
        self._closed = True
        self._wake.set()
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.terminate()
        while self._queue:  # logged after close began: keep it on disk
            self.spool.append([self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))])
        self._conn.close()
        if not ok and self.spooled:
            log.warning("green_mlops: %d metrics of run %s could not reach %s (%s); they wait in %s — "
                        "run `green-mlops sync` when the server is back", self.spooled, self.run_id,
                        self.tracking_uri, self.last_error, self.spool.path)


def sync(spool_dir: str | Path | None = None, tracking_uri: str | None = None) -> SyncReport:
    """Deliver every spooled metric of every run; what still cannot be delivered stays."""
    report = SyncReport()
    directory = Path(spool_dir) if spool_dir else default_spool_dir()
    for path in sorted(directory.glob("*.jsonl")) if directory.exists() else []:
        run_id = path.stem
        lines = read_file(path)
        if not lines:
            path.unlink(missing_ok=True)
            continue
        uri = tracking_uri or lines[0][0]
        spool = Spool(directory, run_id, uri)
        pending = [r for _, r in lines]
        try:
            while pending:
                _send(uri, run_id, pending[:MAX_BATCH])
                report.delivered += len(pending[:MAX_BATCH])
                pending = pending[MAX_BATCH:]
        except Exception as exc:  # noqa: BLE001
            report.errors[run_id] = f"{type(exc).__name__}: {str(exc)[:200]}"
        spool.keep_only(pending)
        report.remaining += len(pending)
    return report
