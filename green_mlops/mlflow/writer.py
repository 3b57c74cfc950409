"""A background writer that delivers metrics to an MLflow run in batches and never loses one.

The training thread only appends to a queue. A daemon thread sends ``log_batch`` calls of at most
1000 metrics (MLflow's limit). When the tracking server cannot be reached the batch goes to a spool
file on disk and the writer retries with backoff; once the server answers, the spool is delivered
first, in order. Requests to an HTTP server are made with MLflow's own ``http_request`` but with no
retries and a short timeout, so a dead server costs seconds, not minutes, and the user's own MLflow
settings (MLFLOW_HTTP_REQUEST_*) stay untouched.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path

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


class MetricWriter:
    """Queue metrics from any thread; a background thread delivers them to ``run_id``."""

    def __init__(self, run_id: str, tracking_uri: str | None = None, *, spool_dir: str | Path | None = None,
                 flush_interval: float = 1.0, max_batch: int = MAX_BATCH) -> None:
        import mlflow

        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH} (MLflow's limit); got {max_batch}")
        self.run_id = run_id
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.spool = Spool(spool_dir or default_spool_dir(), run_id, self.tracking_uri)
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.delivered = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._queue: collections.deque[Record] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stop = False
        self._retry_at = 0.0
        self._backoff = 0.5
        self._thread = threading.Thread(target=self._run, name="green-mlops-writer", daemon=True)
        self._thread.start()

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

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything queued so far is delivered or spooled; True when all was delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._retry_at = 0.0
            self._cond.notify_all()
            while (self._queue or self._busy) and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.05 if left is None else min(left, 0.05))
        return not self._queue and self.spooled == 0

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what can be delivered; anything else stays in the spool for ``green-mlops sync``."""
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)
        while self._queue:  # the thread stopped with items still queued: keep them on disk
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            self.spool.append(batch)
        if self.spooled:
            log.warning("green_mlops: %d metrics of run %s could not reach %s (%s); they wait in %s — "
                        "run `green-mlops sync` when the server is back", self.spooled, self.run_id,
                        self.tracking_uri, self.last_error, self.spool.path)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._stop and len(self._queue) < self.max_batch:
                    self._cond.wait(self.flush_interval)
                if self._stop and not self._queue:
                    return
                self._busy = True
            try:
                self._deliver()
            except Exception as exc:  # noqa: BLE001 - keep the thread alive whatever happens
                log.exception("green_mlops: metric writer error: %s", exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self._stop and not self._queue:
                return

    def _deliver(self) -> None:
        """Spool first (order), then the queue; on failure the queue goes to the spool."""
        if self.spool.path.exists():
            if time.monotonic() < self._retry_at or not self._drain_spool():
                self._to_spool()
                return
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
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
        while self._queue:
            self.spool.append([self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))])

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, 30.0)


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
