"""A running trial's heartbeat: proves to other workers, through the RDB storage, that its worker is alive."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

from green_mlops.search.storage import supports_heartbeat

log = logging.getLogger(__name__)


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, study: optuna.Study, trial: optuna.Trial,
              interval_s: int) -> Iterator[None]:
    """Record a heartbeat every ``interval_s`` from a background thread while the block runs (RDB storages)."""
    if not supports_heartbeat(storage):
        yield
        return
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception as exc:  # a missed beat is retried next interval
                log.warning("heartbeat failed: %s", exc)
            if stop.wait(interval_s):
                return

    t = threading.Thread(target=beat, name="green-mlops-heartbeat", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
