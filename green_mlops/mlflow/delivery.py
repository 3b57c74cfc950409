"""The metric delivery process's side of the writer: batches to the tracking store, the spool, ``sync``.

Batches go to the store through :func:`green_mlops.mlflow.stores.open_store`: MLflow's REST ``log-batch``
for a tracking server and MLflow's tables for SQLite, without importing MLflow; ``MlflowClient.log_batch``
for every other store.

Runs in a fresh interpreter started by :mod:`green_mlops.mlflow.writer` (or by :func:`~green_mlops.mlflow.writer.sync`);
it reads a config, then messages, on stdin and answers on stdout. See the writer's docstring for the design.
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from green_mlops.mlflow import skinny
from green_mlops.mlflow.spool import Record, SpoolFile, SyncReport, spooled_runs
from green_mlops.mlflow.stores import invalid_metric, open_store
from green_mlops.mlflow.wire import Block
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



class _Delivery:
    """Sends one run's metrics to its tracking store; spools what cannot be sent, in order.

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
        self._store: Any = None
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
        n = self._chunk()
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

    def _chunk(self) -> int:
        """Metrics per call: MLflow's limit, or more where the store takes more (SQLite: one transaction a round,
        so the database is locked against the training process's own writes as few times as can be)."""
        try:
            return max(self.max_batch, getattr(self._connected(), "max_batch", 0))
        except Exception:  # not reachable yet: the call itself will say why
            return self.max_batch

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
                    batch = SpoolFile.read_batch(fh, self._chunk())
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
        except Exception as exc:  # unreachable, 5xx, timeout, invalid: decided below
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
        self._timeout = int(min(max(seconds, 1), MAX_REQUEST_TIMEOUT_S))
        if self._store is not None:
            self._store.set_timeout(self._timeout)

    def connect(self) -> None:
        """Open the store now (for MLflow's client: seconds of imports), not when the first batch waits.

        A failure here is not final: ``_log_batch`` tries again, and its error is what gets reported.
        """
        try:
            self._connected()
        except Exception as exc:
            _exit_if_refused(exc)
            log.debug("green_mlops: MLflow client for %s not ready yet: %r", self.tracking_uri, exc)

    def _connected(self) -> Any:
        if self._store is None:
            self._store = open_store(self.tracking_uri, self._timeout)
        return self._store

    def _log_batch(self, batch: list[Record]) -> None:
        self._connected().log_metrics(self.run_id, batch)


def _is_client_error(exc: Exception) -> bool:
    try:
        status = int(exc.get_http_status_code())  # type: ignore[attr-defined]
    except Exception:  # not an MlflowException
        return False
    return 400 <= status < 500 and status not in _CLIENT_ERRORS_TO_RETRY


def _invalid(batch: list[Record]) -> set[int]:
    """Indices of records MLflow's own validation refuses (bad key, say): its rules, and its code where loaded."""
    bad = {i for i, r in enumerate(batch) if invalid_metric(r)}
    if bad or "mlflow.utils.validation" not in sys.modules:
        return bad
    from mlflow.utils.validation import _validate_metric

    for i, (k, v, ts, s) in enumerate(batch):
        try:
            _validate_metric(k, v, ts, s)
        except Exception:
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
    except BaseException:
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
        except Exception:  # EOF: the training process closed us or is gone
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
                    elif kind == "block":
                        records.extend(Block(*payload).records())
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
        except Exception:
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
        except Exception as exc:  # one bad run must not stop the others
            ok, d.last_error = False, redact_text(f"{type(exc).__name__}: {exc}", uri)
        report.delivered += d.delivered
        report.rejected += d.rejected
        if not ok:
            report.remaining += d.spooled
            report.errors[run_id] = d.last_error or "not delivered"
    return report
