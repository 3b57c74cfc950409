"""Deliver metrics to an MLflow run in batches, off the training thread, losing none.

``MetricWriter.log`` only appends a tuple to a deque (no lock, no I/O; NaN, infinity and non-numbers
are counted as ``skipped``); ``log_block`` appends a whole block of steps, packed (:mod:`green_mlops.mlflow.wire`). A pump thread hands what accumulated to a *delivery process*
(:mod:`green_mlops.mlflow.delivery`, started by :mod:`green_mlops.mlflow.launch`) every
``flush_interval`` seconds, so MLflow's client work never competes with training for the GIL. Batches
stay here until that process acknowledges them (delivered, or spooled to disk while the store is
unreachable); if it dies they are spooled from here and it is restarted. Re-sending a batch is harmless:
MLflow's SQL stores keep a metric with the same key, value, timestamp and step once. The whole design,
with the reasons, is in docs/architecture.md ("Metric delivery").
"""
from __future__ import annotations

import atexit
import collections
import logging
import math
import pickle
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from green_mlops.mlflow import skinny
from green_mlops.mlflow.delivery import MAX_BATCH, RESTART_PAUSE_S
from green_mlops.mlflow.events import DeliveryEvents
from green_mlops.mlflow.launch import absolute_uri, spawn
from green_mlops.mlflow.spool import Record, SpoolFile, check_run_id, default_spool_dir
from green_mlops.mlflow.wire import Block, as_records
from green_mlops.redact import redact_text, redact_uri

log = logging.getLogger(__name__)

class _Marker:
    """A flush or close request, queued behind the metrics it must cover."""

    __slots__ = ("kind", "seq", "deadline")

    def __init__(self, kind: str, deadline: float | None = None) -> None:
        self.kind = kind
        self.seq = 0
        self.deadline = deadline  # close: time.time() by which the delivery process must stop and spool


class MetricWriter(DeliveryEvents):
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
        self.tracking_uri = absolute_uri(str(tracking_uri))
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
        self._unacked: dict[int, list[Record] | Block] = {}
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
        except Exception:  # the training thread must never pay for a bad number
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
        except Exception:
            self._skip("<log_many>", metrics, step)
            return
        recs = []
        for key, value in items:
            try:
                v = float(value)
                if math.isfinite(v):
                    recs.append((key, v, ts, step))
                    continue
            except Exception:
                pass
            self._skip(key, value, step)
        if self._late:
            self._spool_here(recs)
            return
        q = self._queue
        q.extend(recs)
        if len(q) >= self.max_batch and not self._wake.is_set():
            self._wake.set()

    def log_block(self, keys: Sequence[str], steps: Any, timestamps_ms: Any, values: Any) -> None:
        """Queue the metrics of several steps at once: ``values`` is an array of steps × ``keys`` (numpy or nested
        lists); packed here, no Python object per metric. A block with a value that is not finite goes one step
        at a time through :meth:`log_many`, which skips that value."""
        try:
            block = Block.pack(keys, steps, timestamps_ms, values)
        except Exception:
            self._skip("<log_block>", values, steps)
            return
        if block is None:
            for step, ts, row in zip(steps, timestamps_ms, values):
                self.log_many(dict(zip(keys, row)), step, ts)
            return
        if self._late:
            self._spool_here(block)
            return
        self._queue.append(block)
        if len(block) >= self.max_batch and not self._wake.is_set():
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
        except Exception as exc:  # the add-on must never fail a finished training run
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
            except Exception:  # keep pumping; what failed is spooled by _send
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
            elif item.__class__ is Block:  # sent whole; the delivery process splits it into MLflow's batches
                if batch:
                    self._send("records", batch)
                    batch = []
                self._send("block", item)
            else:
                batch.append(item)
                if len(batch) >= n:
                    self._send("records", batch)
                    batch = []
        if batch:
            self._send("records", batch)

    def _send(self, kind: str, records: list[Record] | Block | None = None, marker: _Marker | None = None) -> None:
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
            payload = marker.deadline if marker is not None else records.packed() if kind == "block" else records
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
            proc = spawn(cfg)
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
        except Exception:  # EOF: the process exited (close) or died
            pass
        self._child_lost(gen)

    def _spool_here(self, records: list[Record] | Block) -> None:
        if not records:
            return
        records = as_records(records)
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
