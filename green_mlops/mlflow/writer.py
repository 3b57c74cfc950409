"""Deliver metrics to an MLflow run in batches, off the training thread, losing none.

How it works:

* ``MetricWriter.log`` only appends a tuple to a deque (well under a microsecond of work, no lock,
  no I/O). NaN, infinity and values that are not numbers are counted as ``skipped`` and dropped.
* A pump thread hands what accumulated to a small *delivery process* every ``flush_interval``
  seconds (sooner when ``max_batch`` metrics wait), over a pipe. MLflow's client work (JSON and
  HTTP for a server, SQLAlchemy for a database) then runs in that process and never competes with
  training for the GIL. The process is started with ``subprocess`` (fork + exec of a fresh
  interpreter), so it never re-runs the user's ``__main__`` (as ``multiprocessing``'s spawn would)
  and never forks a process that holds CUDA.
* The delivery process imports MLflow as ``mlflow-skinny`` would, without pandas, numpy and pyarrow
  (:mod:`green_mlops.mlflow.skinny`): about 140 MB of memory instead of 230 MB. It makes its client as
  it starts, so the first batch does not wait for MLflow's imports.
* The delivery process calls ``MlflowClient.log_batch`` with at most 1000 metrics (MLflow's limit).
  When that fails (server unreachable, 5xx, timeout, locked database) the batch is appended to the
  run's spool file on disk (see :mod:`green_mlops.mlflow.spool`) and retried with exponential backoff
  (0.5 s doubling to 5 s); while a spool exists, new metrics queue up behind it on disk, so memory
  stays bounded however long the outage. When the server answers again the spool is delivered
  first, in order, then removed.
* Batches stay in the training process until the delivery process acknowledges them (delivered or
  spooled); if the delivery process dies, they are spooled from here and the process is restarted.
* Re-sending a batch whose answer was lost is harmless: MLflow's SQL stores ignore a metric already
  stored with the same key, value, timestamp and step, so every step appears exactly once.

Failing fast without touching the user's MLflow settings: MLflow's REST client reads
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (default 7, exponential backoff) and
``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default 120 s) from ``os.environ`` on every request
(``mlflow.utils.rest_utils.http_request``), so a dead server can hold a request for minutes. The
delivery process is started with its *own* copy of the environment in which retries are 0 and the
timeout is at most 5 s; the user's process and its environment are never modified. The writer
does the retrying itself, in the background, with the spool as buffer.
"""
from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from green_mlops.mlflow import skinny
from green_mlops.mlflow.spool import Record, SpoolFile, SyncReport, check_run_id, default_spool_dir, spooled_runs
from green_mlops.redact import redact_text, redact_uri

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
REQUEST_TIMEOUT_S = 5  # what one request to a dead or hung server may cost the delivery process, at first
MAX_REQUEST_TIMEOUT_S = 30  # after timeouts (a slow, just-restarted server), the timeout doubles up to this
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 5.0
MAX_RESTARTS = 3  # delivery processes started again at once after an unexpected exit; then after a pause
RESTART_PAUSE_S = 30.0  # the pause, doubling up to MAX_RESTART_PAUSE_S while the process keeps dying
MAX_RESTART_PAUSE_S = 600.0
SPILL = 50 * MAX_BATCH  # a backlog larger than this, in the delivery process, waits on disk
IN_MEMORY = 4 * SPILL  # with an unusable spool and no server, the newest this many metrics wait in memory
_CLIENT_ERRORS_TO_RETRY = {401, 403, 408, 429}  # 4xx that say nothing about the metrics themselves


# --------------------------------------------------------------------------------------------------
# The training process's side
# --------------------------------------------------------------------------------------------------

class _Marker:
    """A flush or close request, queued behind the metrics it must cover."""

    __slots__ = ("kind", "seq", "deadline")

    def __init__(self, kind: str, deadline: float | None = None) -> None:
        self.kind = kind
        self.seq = 0
        self.deadline = deadline  # close: time.time() by which the delivery process must stop and spool


class MetricWriter:
    """Queue metrics from any thread in microseconds; a background process delivers them to ``run_id``.

    ``delivered``, ``spooled`` (waiting on disk), ``skipped`` (not finite or not a number) and
    ``rejected`` (refused by MLflow as invalid, kept in ``<run_id>.jsonl.rejected``) count metrics;
    ``last_error`` is the last delivery failure, None once delivery works again.
    """

    def __init__(self, run_id: str, tracking_uri: str | None = None, *, spool_dir: str | Path | None = None,
                 flush_interval: float = 1.0, max_batch: int = MAX_BATCH) -> None:
        check_run_id(run_id)  # it names the spool file: no path may escape the spool folder
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be between 1 and {MAX_BATCH} (MLflow's limit per log_batch); "
                             f"got {max_batch}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0 seconds; got {flush_interval}")
        if tracking_uri is None:
            import mlflow

            tracking_uri = mlflow.get_tracking_uri()
        self.run_id = run_id
        self.tracking_uri = _absolute_uri(str(tracking_uri))
        self.flush_interval = float(flush_interval)
        self.max_batch = int(max_batch)
        self.spool = SpoolFile(spool_dir if spool_dir is not None else default_spool_dir(), run_id,
                               self.tracking_uri)
        self.delivered = 0
        self.rejected = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._spooled = 0
        self._base = (0, 0)  # delivered, rejected by delivery processes that are gone
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._cond = threading.Condition()  # guards _acked, _unacked and the counters
        self._io = threading.Lock()  # guards _proc, _gen, _seq and writes to the pipe
        self._seq = 0
        self._acked = 0
        self._unacked: dict[int, list[Record]] = {}
        self._proc: subprocess.Popen | None = None
        self._gen = 0
        self._restarts = 0
        self._restart_at = 0.0  # monotonic time of the next restart after MAX_RESTARTS quick ones; 0: none due
        self._restart_pause = RESTART_PAUSE_S
        self.lost = 0  # metrics that could neither be delivered nor spooled (no server and an unusable spool)
        self._spool_warned = False
        self._skinny = skinny.lean_for(self.tracking_uri)  # the delivery process imports MLflow without pandas
        self._failing = False
        self._stopping = False  # close() has begun: no restarts
        self._late = False  # close() is done: log() spools synchronously
        self._close_lock = threading.Lock()
        self._closed = False
        with self._io:
            self._start_child()
        self._pump_thread = threading.Thread(target=self._pump_loop, name="green-mlops-writer", daemon=True)
        self._pump_thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- the hot path ---------------------------------------------------------------------------------
    def log(self, key: str, value: float, step: int, timestamp_ms: int | None = None) -> None:
        """Queue one metric; O(1), thread-safe, never blocks and never raises."""
        try:
            v = float(value)
            if not math.isfinite(v):
                raise ValueError("not finite")
            rec = (key, v, time.time_ns() // 1_000_000 if timestamp_ms is None else int(timestamp_ms), int(step))
        except Exception:  # noqa: BLE001 - the training thread must never pay for a bad number
            self._skip(key, value, step)
            return
        if self._late:
            self._spool_here([rec])
            return
        q = self._queue
        q.append(rec)
        if len(q) >= self.max_batch and not self._wake.is_set():  # a full batch: no need to wait for the tick
            self._wake.set()

    def log_many(self, metrics: Mapping[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """Queue several metrics of one step, sharing one timestamp."""
        try:
            ts = time.time_ns() // 1_000_000 if timestamp_ms is None else int(timestamp_ms)
            step = int(step)
            items = metrics.items()
        except Exception:  # noqa: BLE001
            self._skip("<log_many>", metrics, step)
            return
        recs = []
        for key, value in items:
            try:
                v = float(value)
                if math.isfinite(v):
                    recs.append((key, v, ts, step))
                    continue
            except Exception:  # noqa: BLE001
                pass
            self._skip(key, value, step)
        if self._late:
            self._spool_here(recs)
            return
        q = self._queue
        q.extend(recs)
        if len(q) >= self.max_batch and not self._wake.is_set():
            self._wake.set()

    def _skip(self, key: Any, value: Any, step: Any) -> None:
        self.skipped += 1
        log.debug("green_mlops: metric %r=%r at step %r skipped (MLflow takes finite numbers only)", key, value, step)

    # -- counts ---------------------------------------------------------------------------------------
    @property
    def spooled(self) -> int:
        """Metrics of this run waiting on disk (as of the last word from the delivery process)."""
        return self._spooled

    @property
    def closed(self) -> bool:
        return self._closed

    # -- flush and close ------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every metric queued so far is delivered or safely spooled.

        Returns True when nothing of this run waits in the spool, i.e. everything was delivered; False
        when some metrics wait on disk (they are retried in the background) or ``timeout`` ran out.
        """
        if self._closed:
            return self._spooled == 0
        marker = _Marker("flush")
        self._queue.append(marker)
        self._wake.set()
        return self._wait(marker, timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Deliver what can be delivered within ``timeout`` and stop; the rest stays in the spool.

        Spooled metrics are delivered by the next writer of the same run, or by
        :func:`green_mlops.mlflow.sync` / ``green-mlops sync``.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._close(timeout)
        except Exception as exc:  # noqa: BLE001 - the add-on must never fail a finished training run
            log.warning("green_mlops: closing the metric writer of run %s failed: %s", self.run_id,
                        redact_text(f"{type(exc).__name__}: {exc}", self.tracking_uri))

    def _close(self, timeout: float | None) -> None:
        # the delivery process stops delivering a second before our timeout, to spool the rest and answer
        marker = _Marker("close", None if timeout is None else time.time() + max(timeout - 1.0, 0.0))
        self._queue.append(marker)
        self._stopping = True
        self._wake.set()
        self._wait(marker, timeout)
        self._pump_thread.join(timeout=5)
        with self._io:
            proc, gen = self._proc, self._gen
        if proc is not None:
            try:
                proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # still busy delivering a long spool: what it has not sent is on disk
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._child_lost(gen)
        self._late = True  # from now on log() spools by itself; what was queued meanwhile goes to disk here
        leftover = []
        while self._queue:
            item = self._queue.popleft()
            if item.__class__ is not _Marker:
                leftover.append(item)
        self._spool_here(leftover)
        try:
            self._spooled = self.spool.count()
        except OSError:
            self._spooled = 0
        if self._spooled:
            log.warning("green_mlops: %d metrics of run %s were not delivered to %s (%s); they wait in %s: run "
                        "`green-mlops sync` when the server is back", self._spooled, self.run_id,
                        redact_uri(self.tracking_uri), self.last_error or "close() timed out", self.spool.path)
        if self.lost:
            log.warning("green_mlops: %d metrics of run %s could be neither delivered to %s nor spooled in %s",
                        self.lost, self.run_id, redact_uri(self.tracking_uri), self.spool.directory)

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, marker: _Marker, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (marker.seq and self._acked >= marker.seq):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return self._spooled == 0

    # -- the pump thread ------------------------------------------------------------------------------
    def _pump_loop(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._pump_once()
            except Exception:  # noqa: BLE001 - keep pumping; what failed is spooled by _send
                log.exception("green_mlops: metric writer of run %s hit an error", self.run_id)
            if self._stopping and not self._queue:
                return

    def _pump_once(self) -> None:
        q, n, batch = self._queue, self.max_batch, []
        while q:
            item = q.popleft()
            if item.__class__ is _Marker:
                if batch:
                    self._send("records", batch)
                    batch = []
                self._send(item.kind, marker=item)
            else:
                batch.append(item)
                if len(batch) >= n:
                    self._send("records", batch)
                    batch = []
        if batch:
            self._send("records", batch)

    def _send(self, kind: str, records: list[Record] | None = None, marker: _Marker | None = None) -> None:
        """Hand one message to the delivery process; records stay in _unacked until it answers."""
        with self._io:
            self._seq += 1
            seq = self._seq
            if marker is not None:
                marker.seq = seq
            if records:
                with self._cond:
                    self._unacked[seq] = records
            if self._proc is None and self._restart_at and time.monotonic() >= self._restart_at and not self._stopping:
                self._restart_at, self._restarts = 0.0, 0  # the pause after repeated exits is over: try again
                self._start_child()
            if self._proc is None:  # no delivery process (could not start, or pausing): straight to disk
                self._spool_here(records or [])
                with self._cond:
                    self._unacked.pop(seq, None)
                    self._acked = seq
                    self._cond.notify_all()
                return
            payload = records if marker is None else marker.deadline
            try:
                self._proc.stdin.write(pickle.dumps((kind, seq, payload), pickle.HIGHEST_PROTOCOL))  # type: ignore[union-attr]
                self._proc.stdin.flush()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass  # the process is gone: its reader thread sees EOF and spools everything unacknowledged

    # -- the delivery process -------------------------------------------------------------------------
    def _start_child(self) -> None:
        """Start a delivery process (call with _io held)."""
        cfg = {"mode": "writer", "run_id": self.run_id, "tracking_uri": self.tracking_uri,
               "spool_dir": str(self.spool.directory), "flush_interval": self.flush_interval,
               "max_batch": self.max_batch, "skinny": skinny.OPTIONAL if self._skinny else ()}
        try:
            proc = _spawn(cfg)
        except (OSError, ValueError) as exc:
            log.warning("green_mlops: could not start the metric delivery process (%s); metrics of run %s go "
                        "to %s: run `green-mlops sync` to deliver them", exc, self.run_id, self.spool.path)
            self._proc = None
            self._pause_restarts()
            return
        self._gen += 1
        self._proc = proc
        threading.Thread(target=self._read_loop, args=(proc, self._gen), name="green-mlops-writer-acks",
                         daemon=True).start()

    def _read_loop(self, proc: subprocess.Popen, gen: int) -> None:
        try:
            while True:
                msg = pickle.load(proc.stdout)  # type: ignore[arg-type]
                if msg[0] == "ack":
                    self._on_ack(*msg[1:])
                elif msg[0] == "spool":  # the delivery process could not spool: it holds metrics in memory
                    self._spool_unusable(msg[1])
        except Exception:  # noqa: BLE001 - EOF: the process exited (close) or died
            pass
        self._child_lost(gen)

    def _on_ack(self, seq: int, delivered: int, spooled: int, rejected: int, error: str | None,
                lost: int = 0) -> None:
        with self._cond:
            rejected_before = self.rejected
            for s in [s for s in self._unacked if s <= seq]:
                del self._unacked[s]
            self._acked = max(self._acked, seq)
            self.delivered = self._base[0] + delivered
            self.rejected = self._base[1] + rejected
            self._spooled = spooled
            self.last_error = error
            self.lost += lost
            self._cond.notify_all()
        if self.rejected > rejected_before:
            log.warning("green_mlops: MLflow refused %d metrics of run %s as invalid; they are kept, with the "
                        "reason, in %s", self.rejected - rejected_before, self.run_id, self.spool.rejected_path)
        if error and not self._failing:
            self._failing = True
            where = "memory" if self._spool_warned else str(self.spool.path)
            log.warning("green_mlops: cannot deliver metrics of run %s to %s (%s); they wait in %s and are "
                        "retried in the background", self.run_id, redact_uri(self.tracking_uri), error, where)
        elif self._failing and not error and not spooled:
            self._failing = False
            log.info("green_mlops: %s answers again; spooled metrics of run %s delivered",
                     redact_uri(self.tracking_uri), self.run_id)

    def _spool_unusable(self, reason: str) -> None:
        """Say once that the spool cannot be used, and why; delivery to the tracking store goes on."""
        if self._spool_warned:
            return
        self._spool_warned = True
        log.warning("green_mlops: the metric spool %s cannot be used (%s); metrics of run %s still go to %s, "
                    "and wait in memory while it does not answer: set GREEN_MLOPS_SPOOL_DIR to a writable "
                    "folder", self.spool.directory, reason, self.run_id, redact_uri(self.tracking_uri))

    def _child_lost(self, gen: int) -> None:
        """The delivery process exited: spool what it had not acknowledged; restart it unless closing."""
        with self._io:
            if gen != self._gen or self._proc is None:
                return
            proc, self._proc = self._proc, None
            with self._cond:
                pending = [self._unacked[s] for s in sorted(self._unacked)]
                self._unacked.clear()
                self._base = (self.delivered, self.rejected)
            for records in pending:
                self._spool_here(records)
            with self._cond:
                self._acked = self._seq  # everything handed over so far is delivered or on disk
                self._cond.notify_all()
            if self._stopping:
                return
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            if code == skinny.EXIT_NEEDS_FULL_IMPORTS and self._skinny:
                self._skinny = False  # a store plugin needs pandas or numpy: not a failure, no restart counted
                log.info("green_mlops: the MLflow store of run %s needs MLflow's optional imports; delivering "
                         "with all of them", self.run_id)
                self._start_child()
            elif self._restarts < MAX_RESTARTS:
                self._restarts += 1
                log.warning("green_mlops: the metric delivery process of run %s exited (code %s); starting it "
                            "again", self.run_id, code)
                self._start_child()
            else:
                log.warning("green_mlops: the metric delivery process of run %s exited (code %s) %d times; "
                            "metrics go to %s meanwhile, and delivery starts again in %.0f s", self.run_id, code,
                            MAX_RESTARTS + 1, self.spool.path, self._restart_pause)
                self._pause_restarts()

    def _pause_restarts(self) -> None:
        """Start the delivery process again later (call with _io held): the pause doubles while it keeps dying."""
        self._restart_at = time.monotonic() + self._restart_pause
        self._restart_pause = min(self._restart_pause * 2, MAX_RESTART_PAUSE_S)

    def _spool_here(self, records: list[Record]) -> None:
        if not records:
            return
        try:
            self.spool.append(records)
        except OSError as exc:
            self._spool_unusable(exc.strerror or str(exc))
            with self._cond:
                self.lost += len(records)
            return
        with self._cond:
            self._spooled += len(records)


def _close_at_exit(ref: weakref.ref) -> None:
    writer = ref()
    if writer is not None and not writer.closed:
        writer.close(timeout=10)


def _absolute_uri(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute, so that a later ``sync`` from elsewhere finds the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + os.path.abspath(uri[len(prefix):])
    return uri


def _delivery_env() -> dict[str, str]:
    """The delivery process's environment: the user's, with MLflow's own HTTP retries off and a short timeout.

    Only this copy is changed; ``os.environ`` of the user's process is left as it is.
    """
    env = dict(os.environ)
    try:
        user_timeout = int(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120"))
    except ValueError:
        user_timeout = 120
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, min(user_timeout, REQUEST_TIMEOUT_S)))
    env["MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT"] = str(2 * REQUEST_TIMEOUT_S)
    return env


def _spawn(cfg: dict[str, Any]) -> subprocess.Popen:
    """A fresh interpreter running :func:`_child_main`, with this process's import path."""
    path = [p for p in sys.path if isinstance(p, str)]
    code = (f"import sys; sys.path[:0] = {path!r}; "
            "from green_mlops.mlflow.writer import _child_main; _child_main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=_delivery_env(), close_fds=True)
    try:
        proc.stdin.write(pickle.dumps(cfg, pickle.HIGHEST_PROTOCOL))  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    except OSError:
        proc.kill()
        raise
    return proc


# --------------------------------------------------------------------------------------------------
# Delivery (runs in the delivery process, for a writer or for sync)
# --------------------------------------------------------------------------------------------------

class _Delivery:
    """Sends one run's metrics with ``MlflowClient.log_batch``; spools what cannot be sent, in order.

    After :meth:`deliver` nothing is pending: every record is delivered, spooled or set aside as invalid.
    """

    def __init__(self, run_id: str, tracking_uri: str, spool: SpoolFile, max_batch: int = MAX_BATCH,
                 absorb: Callable[[], list[Record]] | None = None, progress: Callable[[], None] | None = None) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.spool = spool
        self.max_batch = max_batch
        self.absorb = absorb  # records that arrived meanwhile (so a long drain does not hold them in memory)
        self.progress = progress  # called during a long drain, when all received so far is delivered or on disk
        self.deadline: float | None = None  # time.time() by which deliver() must return (close)
        self.pending: list[Record] = []
        self.delivered = 0
        self.rejected = 0
        self.lost = 0  # dropped from memory: no server and an unusable spool (see spool_error)
        self.last_error: str | None = None
        self.spool_error: str | None = None  # why the spool cannot be used, while it cannot
        self.spooled = spool.count()
        self._client: Any = None
        self._timeout = REQUEST_TIMEOUT_S
        self._retry_at = 0.0
        self._backoff = FIRST_RETRY_S

    def deliver(self, force: bool = False) -> bool:
        """Spool first (oldest), then what is pending; True when nothing is left waiting.

        While a spool exists and its retry is not due (unless ``force``), pending records join it on
        disk. A backlog larger than ``SPILL`` records goes to disk too, so that a server slower than
        the metrics arrive costs disk, not memory. Stops at ``deadline`` (wall clock), spooling the rest.
        """
        if self.spooled or self.spool.exists():
            if (not force and time.monotonic() < self._retry_at) or not self._drain():
                self.spool_pending()
                return False
        n = self.max_batch
        while self.pending:
            if len(self.pending) > SPILL or self._late():
                if self.spool_pending():
                    return not self._late() and self._drain()
                if self._late():
                    return False
            if self.last_error and not force and time.monotonic() < self._retry_at:
                return False  # the spool is unusable and the store did not answer: wait in memory
            left = self._send(self.pending[:n])
            if left:
                self.pending[:n] = left
                self.spool_pending()
                return False
            del self.pending[:n]
            if self.absorb is not None:
                self.pending.extend(self.absorb())
        return True

    def spool_pending(self) -> bool:
        """Move what is pending to the spool; False (pending kept in memory, up to IN_MEMORY) when it is unusable."""
        if not self.pending:
            return True
        try:
            self.spool.append(self.pending)
        except OSError as exc:
            self.spool_error = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            if len(self.pending) > IN_MEMORY:
                self.lost += len(self.pending) - IN_MEMORY
                del self.pending[:len(self.pending) - IN_MEMORY]
            return False
        self.spooled += len(self.pending)
        self.pending = []
        self.spool_error = None
        return True

    def _late(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def _drain(self) -> bool:
        """Deliver the spool from its first line; remove it when done, keep the rest on a failure."""
        with self.spool.locked():
            try:
                fh = self.spool.path.open("rb")
            except FileNotFoundError:
                self.spooled = 0
                return True
            with fh:
                while True:
                    start = fh.tell()
                    if self._late():
                        if start:
                            self.spooled = self.spool.keep_from(fh, start)
                        return False
                    batch = SpoolFile.read_batch(fh, self.max_batch)
                    if not batch:
                        break
                    left = self._send(batch)
                    if left:
                        if start or len(left) < len(batch):  # at the head, with nothing set aside, the file is right
                            self.spooled = self.spool.keep_from(fh, fh.tell(), head=left)
                        return False
                    self.spooled = max(self.spooled - len(batch), 0)
                    if self.absorb is not None:
                        self.pending.extend(self.absorb())
                    self.spool_pending()  # newer metrics queue up behind, on disk, in order
                    if self.progress is not None:
                        self.progress()  # everything received so far is delivered or on disk: say so
            self.spool.remove()
            self.spooled = 0
        log.info("green_mlops: spooled metrics of run %s delivered to %s", self.run_id, redact_uri(self.tracking_uri))
        return True

    def _send(self, batch: list[Record]) -> list[Record]:
        """Deliver one batch; what is left undelivered (empty on success) is for the caller to spool."""
        try:
            self._log_batch(batch)
        except Exception as exc:  # noqa: BLE001 - unreachable, 5xx, timeout, invalid: decided below
            _exit_if_refused(exc)  # the batch is still pending or in the spool
            if _is_client_error(exc):
                bad = _invalid(batch)
                if bad:  # MLflow will never take these: set them aside, send the rest
                    reason = f"{type(exc).__name__}: {str(exc)[:300]}"
                    self.spool.reject([batch[i] for i in bad], reason)
                    self.rejected += len(bad)
                    log.warning("green_mlops: MLflow refused %d metrics of run %s as invalid (%s); kept in %s",
                                len(bad), self.run_id, reason, self.spool.rejected_path)
                    good = [r for i, r in enumerate(batch) if i not in bad]
                    return self._send(good) if good else []
            self.last_error = redact_text(f"{type(exc).__name__}: {str(exc)[:300]}", self.tracking_uri)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_RETRY_S)
            if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower():
                self._set_timeout(self._timeout * 2)  # a slow (just restarted, loaded) server: give it longer
            return batch
        self.delivered += len(batch)
        self.last_error = None
        self._backoff = FIRST_RETRY_S
        return []

    def _set_timeout(self, seconds: float) -> None:
        """MLflow reads its request timeout from the environment per request; this process's copy is ours."""
        self._timeout = int(min(max(seconds, 1), MAX_REQUEST_TIMEOUT_S))
        if os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") == "0":  # only in our delivery process
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(self._timeout)

    def connect(self) -> None:
        """Import MLflow and make the client now (seconds of CPU), not when the first batch waits.

        A failure here is not final: ``_log_batch`` tries again, and its error is what gets reported.
        """
        try:
            self._connected()
        except Exception as exc:  # noqa: BLE001
            _exit_if_refused(exc)
            log.debug("green_mlops: MLflow client for %s not ready yet: %r", self.tracking_uri, exc)

    def _connected(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _log_batch(self, batch: list[Record]) -> None:
        from mlflow.entities import Metric

        self._connected().log_batch(self.run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in batch])


def _is_client_error(exc: Exception) -> bool:
    try:
        status = int(exc.get_http_status_code())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not an MlflowException
        return False
    return 400 <= status < 500 and status not in _CLIENT_ERRORS_TO_RETRY


def _invalid(batch: list[Record]) -> set[int]:
    """Indices of records MLflow's own validation refuses (bad key, say)."""
    try:
        from mlflow.utils.validation import _validate_metric
    except ImportError:
        return set()
    bad = set()
    for i, (k, v, ts, s) in enumerate(batch):
        try:
            _validate_metric(k, v, ts, s)
        except Exception:  # noqa: BLE001
            bad.add(i)
    return bad


_GUARD: skinny.SkinnyImports | None = None  # in the delivery process: the imports it refuses


def _exit_if_refused(exc: BaseException) -> None:
    """Leave the delivery process, asking for every import, when ``exc`` comes from a refused import."""
    if _GUARD is not None and _GUARD.caused(exc):
        raise SystemExit(skinny.EXIT_NEEDS_FULL_IMPORTS) from exc


def _child_main() -> None:
    """Entry point of the delivery process: a config, then messages, on stdin; answers on stdout."""
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that `finally` spools what is in memory
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (of plugins, say) go to stderr, never into the answers
    logging.basicConfig(level=logging.ERROR, format="green_mlops delivery: %(levelname)s %(message)s")
    code = 1
    try:
        cfg = pickle.load(inp)
        global _GUARD
        _GUARD = skinny.install(cfg.get("skinny", ()))
        if cfg["mode"] == "sync":  # Ctrl-C stops a sync; the spool stays consistent
            report = _sync_here(Path(cfg["spool_dir"]), cfg["tracking_uri"])
            out.write(pickle.dumps(report, pickle.HIGHEST_PROTOCOL))
        else:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the training process, which closes us
            _serve(cfg, inp, out)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001
        log.exception("green_mlops: the metric delivery process failed")
    finally:
        try:
            out.flush()
        except OSError:
            pass
        # Exit now: the daemon thread reading stdin holds its buffer's lock, which the interpreter's
        # normal shutdown would wait for (a fatal error). Everything owed is on disk or delivered.
        os._exit(code)


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _serve(cfg: dict[str, Any], inp: IO[bytes], out: IO[bytes]) -> None:
    """The writer's delivery loop: take batches, deliver every flush_interval, answer flush and close."""
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while True:
                inbox.put(pickle.load(inp))
        except Exception:  # noqa: BLE001 - EOF: the training process closed us or is gone
            inbox.put(None)

    threading.Thread(target=read, name="green-mlops-delivery-in", daemon=True).start()
    controls: list[tuple] = []
    state = {"seq": 0, "eof": False}

    def take(wait: float | None = None) -> list[Record]:
        """Records that have arrived, waiting up to ``wait`` seconds for the first message."""
        records: list[Record] = []
        try:
            msg = inbox.get_nowait() if wait is None else inbox.get(timeout=max(wait, 0.0))
            while True:
                if msg is None:  # the training process is gone: deliver what we have, briefly
                    state["eof"] = True
                    if d.deadline is None:
                        d.deadline = time.time() + 10
                else:
                    kind, seq, payload = msg
                    state["seq"] = seq
                    if kind == "records":
                        records.extend(payload)
                    else:
                        controls.append(msg)
                        if kind == "close":
                            d.deadline = payload
                msg = inbox.get_nowait()
        except queue.Empty:
            pass
        return records

    def tell(msg: tuple) -> None:
        try:
            out.write(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))
            out.flush()
        except (OSError, ValueError):
            pass

    def answer() -> None:
        """Acknowledge every message received so far (call only when nothing is pending in memory)."""
        lost, d.lost = d.lost, 0
        tell(("ack", state["seq"], d.delivered, d.spooled, d.rejected, d.last_error, lost))

    spool = SpoolFile(cfg["spool_dir"], cfg["run_id"], cfg["tracking_uri"])
    d = _Delivery(cfg["run_id"], cfg["tracking_uri"], spool, cfg["max_batch"], absorb=take, progress=answer)
    interval = cfg["flush_interval"]
    next_due = time.monotonic() + interval
    answered = None
    noted = None

    try:
        d.connect()  # MLflow's imports before the first batch: a flush answered now means delivery is ready
        if d.spooled:  # a spool left by an earlier writer of this run: deliver it first
            d.deliver(force=True)
            answer()
        while True:
            if not state["eof"]:
                d.pending.extend(take(next_due - time.monotonic()))
            must = bool(controls) or state["eof"]
            if must or time.monotonic() >= next_due or len(d.pending) >= d.max_batch:
                d.deliver(force=must)
                next_due = time.monotonic() + interval
            now = (state["seq"], d.delivered, d.spooled, d.rejected, d.last_error)
            if not d.pending and (now != answered or controls):
                answer()
                answered = now
            if d.spool_error and d.spool_error != noted:
                noted = d.spool_error
                tell(("spool", noted))
            if state["eof"] or any(c[0] == "close" for c in controls):
                return
            controls.clear()
    finally:  # SIGTERM or an error: what is in memory goes to disk (the writer also spools what it
        try:      # has not seen acknowledged; a duplicate is harmless, MLflow stores it once)
            d.spool_pending()
        except Exception:  # noqa: BLE001
            log.exception("green_mlops: could not spool metrics of run %s", cfg["run_id"])


def _sync_here(directory: Path, tracking_uri: str | None) -> SyncReport:
    report = SyncReport()
    for run_id in spooled_runs(directory):
        spool = SpoolFile(directory, run_id)
        uri = tracking_uri or spool.first_tracking_uri()
        if uri is None:  # only torn lines: nothing to deliver
            spool.remove()
            continue
        spool.tracking_uri = uri
        d = _Delivery(run_id, uri, spool)
        try:
            ok = d.deliver(force=True)
        except Exception as exc:  # noqa: BLE001 - one bad run must not stop the others
            ok, d.last_error = False, redact_text(f"{type(exc).__name__}: {exc}", uri)
        report.delivered += d.delivered
        report.rejected += d.rejected
        if not ok:
            report.remaining += d.spooled
            report.errors[run_id] = d.last_error or "not delivered"
    return report


# --------------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------------

def sync(spool_dir: str | Path | None = None, tracking_uri: str | None = None) -> SyncReport:
    """Deliver the spooled metrics of every run in ``spool_dir``, oldest first; what fails stays spooled.

    ``tracking_uri`` sends them to another server than the one each record names. Delivery runs in a
    short-lived process with the same fast-failing settings as the writer's, so a server that is
    still down costs seconds, and this process's MLflow settings are left alone.
    """
    directory = Path(spool_dir) if spool_dir is not None else default_spool_dir()
    if not spooled_runs(directory):
        return SyncReport()
    uris = ([tracking_uri] if tracking_uri else
            [SpoolFile(directory, run_id).first_tracking_uri() for run_id in spooled_runs(directory)])
    lean = all(uri is None or skinny.lean_for(uri) for uri in uris)
    cfg = {"mode": "sync", "spool_dir": str(directory), "tracking_uri": tracking_uri,
           "skinny": skinny.OPTIONAL if lean else ()}
    try:
        proc = _spawn(cfg)
        out, _ = proc.communicate()
        if proc.returncode == skinny.EXIT_NEEDS_FULL_IMPORTS:  # a store plugin needs pandas or numpy
            proc = _spawn({**cfg, "skinny": ()})
            out, _ = proc.communicate()
        report = pickle.loads(out) if proc.returncode == 0 and out else None
        error = f"the delivery process exited with code {proc.returncode}"
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        report, error = None, f"{type(exc).__name__}: {exc}"
    if report is None:
        report = SyncReport()
        for run_id in spooled_runs(directory):
            report.remaining += SpoolFile(directory, run_id).count()
            report.errors[run_id] = error
    return report
