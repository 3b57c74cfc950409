"""``green_mlops.mlflow.autolog()``: energy metrics for any ``mlflow.start_run()``, no Lightning needed.

While a run is active a meter samples in the background; every ``log_every_seconds`` the power and
cumulative energy are logged with step = whole seconds since the run started, and at ``end_run``
the run gets the totals, CO2e and the trace, plot and summary artifacts (also when the code inside
the run raised: MLflow then ends it FAILED or KILLED as usual, with the energy up to that point).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mlflow
import mlflow.tracking.fluent as fluent

from green_mlops.argtypes import check_whole
from green_mlops.meter import Settings
from green_mlops.run.core import MeterConfig, MeteredRun
from green_mlops.run.sinks import MlflowRun, Sinks
from green_mlops.run.sources import process_sources

log = logging.getLogger(__name__)


@dataclass
class _Metered:
    """The metering attached to one active run."""

    run: MeteredRun
    stop: threading.Event = field(default_factory=threading.Event)
    ticker: threading.Thread | None = None


_lock = threading.Lock()
_config: tuple[MeterConfig, int] | None = None
_active: dict[str, _Metered] = {}
_originals: dict[str, Any] = {}


def autolog(interval: float = 0.1, idle_seconds: float = 0.0, log_every_seconds: int = 1, *,
            country: str | None = None, carbon_g_per_kwh: float | None = None, pue: float = 1.0,
            settings: Settings | None = None, disable: bool = False) -> None:
    """Meter every MLflow run started from now on (``disable=True`` undoes it)."""
    global _config
    if disable:
        _unpatch()
        _config = None
        return
    config = MeterConfig(interval, idle_seconds, 1, country, carbon_g_per_kwh, pue, settings)
    check_whole("log_every_seconds (steps are seconds)", log_every_seconds, 1)
    _config = (config, log_every_seconds)
    _patch()


def _patch() -> None:
    if _originals:
        return
    _originals["start_run"] = fluent.start_run
    _originals["end_run"] = fluent.end_run
    for module in (mlflow, fluent):
        module.start_run = _start_run  # type: ignore[assignment]
        module.end_run = _end_run  # type: ignore[assignment]


def _unpatch() -> None:
    if not _originals:
        return
    for module in (mlflow, fluent):
        module.start_run = _originals["start_run"]  # type: ignore[assignment]
        module.end_run = _originals["end_run"]  # type: ignore[assignment]
    _originals.clear()


def _start_run(*args: Any, **kwargs: Any) -> Any:
    active = _originals["start_run"](*args, **kwargs)
    if _config is not None:
        try:
            _begin(active.info.run_id)
        except Exception as exc:  # metering must never stop the user's run
            log.warning("green_mlops: could not meter run %s: %s", active.info.run_id, exc)
    return active


def _end_run(status: str = "FINISHED", *args: Any, **kwargs: Any) -> Any:
    run = mlflow.active_run()
    if run is not None:
        _finish(run.info.run_id, status)
    return _originals["end_run"](status, *args, **kwargs)


def _begin(run_id: str) -> None:
    assert _config is not None
    cfg, every = _config
    sinks = Sinks([MlflowRun(mlflow.MlflowClient(), run_id, mlflow.get_tracking_uri())])
    run = MeteredRun("run", cfg, sinks, process_sources(cfg.settings), xlabel="seconds")
    metered = _Metered(run)
    start = run.meter.start_time

    def tick() -> None:
        k = 1
        while not metered.stop.wait(max(start + k * every - time.monotonic(), 0)):
            run.step(k * every)
            k += 1

    metered.ticker = threading.Thread(target=tick, name="green-mlops-autolog", daemon=True)
    metered.ticker.start()
    with _lock:
        _active[run_id] = metered


def _finish(run_id: str, status: str) -> None:
    with _lock:
        metered = _active.pop(run_id, None)
    if metered is None:
        return
    metered.stop.set()
    if metered.ticker is not None:
        metered.ticker.join(timeout=5)
    metered.run.finish(status, step=None)
