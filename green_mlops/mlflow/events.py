"""What the metric writer does when its delivery process answers, cannot spool, or exits.

A part of :class:`green_mlops.mlflow.writer.MetricWriter` (its base class), kept apart so that the writer's
hot path and lifecycle read on their own: acknowledgements update the counts and say, once, when delivery
fails or works again; an exited process has its unacknowledged batches spooled and is restarted, at once
a few times, then after a pause that doubles while it keeps dying.
"""
from __future__ import annotations

import logging
import subprocess
import time
from typing import Any

from green_mlops.mlflow import skinny
from green_mlops.mlflow.delivery import MAX_RESTART_PAUSE_S, MAX_RESTARTS
from green_mlops.redact import redact_uri

log = logging.getLogger("green_mlops.mlflow.writer")


class DeliveryEvents:
    """The writer's reactions to its delivery process (uses the writer's state; no state of its own)."""

    run_id: str
    tracking_uri: str
    spool: Any
    _cond: Any

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
