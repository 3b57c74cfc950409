"""``green_mlops.mlflow.autolog()``: energy metrics for any ``mlflow.start_run()``, no Lightning needed.

While a run is active a meter samples in the background; every ``log_every_seconds`` the power and
cumulative energy are logged with step = whole seconds since the run started, and at ``end_run``
the run gets the totals, CO2e and the trace, plot and summary artifacts (also when the code inside
the run raised: MLflow then ends it FAILED or KILLED as usual, with the energy up to that point).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mlflow
import mlflow.tracking.fluent as fluent

from green_mlops.artifacts import write_run_artifacts
from green_mlops.emissions import CarbonIntensity, carbon_intensity, co2e_g
from green_mlops.meter import EnergyMeter, Settings
from green_mlops.meter.meter import validate_interval
from green_mlops.stream import EnergyStream, StepMetrics

log = logging.getLogger(__name__)


@dataclass
class _Config:
    interval: float
    idle_seconds: float
    log_every_seconds: int
    intensity: CarbonIntensity
    pue: float
    settings: Settings | None


@dataclass
class _Metered:
    """The metering attached to one active run."""

    run_id: str
    meter: EnergyMeter
    stream: EnergyStream
    writer: Any
    steps: list[StepMetrics] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    ticker: threading.Thread | None = None


_lock = threading.Lock()
_config: _Config | None = None
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
    validate_interval(interval)
    if not idle_seconds >= 0:
        raise ValueError(f"idle_seconds must be 0 or more seconds; got {idle_seconds!r}")
    if not (isinstance(log_every_seconds, int) and log_every_seconds >= 1):
        raise ValueError(f"log_every_seconds must be a whole number of seconds ≥ 1 (steps are seconds); "
                         f"got {log_every_seconds!r}")
    intensity = carbon_intensity(country, carbon_g_per_kwh)
    co2e_g(0.0, intensity, pue)
    _config = _Config(float(interval), float(idle_seconds), log_every_seconds, intensity, float(pue), settings)
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
        except Exception as exc:  # noqa: BLE001 - metering must never stop the user's run
            log.warning("green_mlops: could not meter run %s: %s", active.info.run_id, exc)
    return active


def _end_run(status: str = "FINISHED", *args: Any, **kwargs: Any) -> Any:
    run = mlflow.active_run()
    if run is not None:
        _finish(run.info.run_id, status)
    return _originals["end_run"](status, *args, **kwargs)


def _begin(run_id: str) -> None:
    from green_mlops.mlflow.writer import MetricWriter

    cfg = _config
    assert cfg is not None
    meter = EnergyMeter(cfg.interval, settings=cfg.settings, name="run")
    if cfg.idle_seconds:
        meter.measure_idle(cfg.idle_seconds)
    meter.start()
    writer = MetricWriter(run_id, mlflow.get_tracking_uri())
    metered: _Metered

    def sink(batch: list[StepMetrics]) -> None:
        metered.steps.extend(batch)
        for step, ts, metrics in batch:
            writer.log_many(metrics, step, ts)

    stream = EnergyStream(meter, sink, origin=meter.start_time).start()
    metered = _Metered(run_id, meter, stream, writer)

    def tick() -> None:
        k = 1
        while not metered.stop.wait(max(meter.start_time + k * cfg.log_every_seconds - time.monotonic(), 0)):
            stream.mark(k * cfg.log_every_seconds)
            k += 1

    metered.ticker = threading.Thread(target=tick, name="green-mlops-autolog", daemon=True)
    metered.ticker.start()
    with _lock:
        _active[run_id] = metered


def _finish(run_id: str, status: str) -> None:
    with _lock:
        metered = _active.pop(run_id, None)
    if metered is None or _config is None:
        return
    metered.stop.set()
    if metered.ticker is not None:
        metered.ticker.join(timeout=5)
    result = metered.meter.stop()
    metered.stream.mark(math.ceil(result.duration_s), result.end)
    metered.stream.close()
    total = result.total_J
    end = {"energy/run_J": total, "co2e/run_g": co2e_g(total, _config.intensity, _config.pue),
           "time/run_s": result.duration_s}
    for domain in ("gpu", "cpu", "dram"):
        value = result.domain_J(domain)
        if value is not None:
            end[f"energy/run_{domain}_J"] = value
    if result.net_J is not None:
        end["energy/run_net_J"] = result.net_J
    summary = {"status": status, "result": result.as_dict(), "metrics": end,
               "carbon_intensity": vars(_config.intensity), "pue": _config.pue}
    try:
        metered.writer.log_many(end, int(result.duration_s), int(time.time() * 1000))
        from green_mlops.mlflow.uploads import upload_artifacts

        files = write_run_artifacts(metered.meter, metered.steps, summary, "run", xlabel="seconds")
        upload_artifacts(mlflow.MlflowClient(), run_id, files)  # fails fast; kept for `green-mlops sync`
    except Exception as exc:  # noqa: BLE001 - what was measured is still delivered below
        log.warning("green_mlops: could not log the energy summary of run %s: %s", run_id, exc)
    finally:
        metered.writer.close()
