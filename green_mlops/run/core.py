"""The metered-run core: one object per metered run, behind every integration.

An adapter (Lightning's callback, Hugging Face's callback, the plain-loop API, ``mlflow.autolog``) only maps
its framework's hooks to :meth:`MeteredRun.step`, :meth:`~MeteredRun.epoch_start` /
:meth:`~MeteredRun.epoch_end` and :meth:`~MeteredRun.finish`. The run owns the meter, the step stream
(attribution on a background thread), the sinks (MLflow writers, other loggers), the end-of-run figures,
the summary and the artifacts. A process that meters nothing (a rank whose GPU and host other ranks meter)
gets a :class:`NullRun` with the same methods. Nothing here raises into the user's training once started.
"""
from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_mlops import names
from green_mlops.argtypes import check_seconds, check_whole
from green_mlops.meter import EnergyMeter, EnergyResult, PowerSource, Settings, validate_interval
from green_mlops.metrics.emissions import CarbonIntensity, carbon_intensity, co2e_g
from green_mlops.run.artifacts import start_run_artifacts, summary_line
from green_mlops.run.sinks import Sinks
from green_mlops.run.stage_energy import stage_metrics, stage_vector
from green_mlops.run.steplog import StepLog
from green_mlops.run.stream import EnergyStream, StepMetrics

log = logging.getLogger(__name__)

Reduce = Callable[[Any], Any]  # sums a number, or a list of numbers, over the processes of a distributed run


@dataclass
class MeterConfig:
    """How to meter, shared by every integration; checked when made, before any training starts."""

    interval: float = 0.1
    idle_seconds: float = 0.0
    log_every_n_steps: int = 1
    country: str | None = None
    carbon_g_per_kwh: float | None = None
    pue: float = 1.0
    settings: Settings | None = None
    print_summary: bool = True  # one line on stderr at the end: energy, provenance, where the data went
    intensity: CarbonIntensity = field(init=False)

    def __post_init__(self) -> None:
        self.interval = validate_interval(self.interval)
        self.idle_seconds = check_seconds("idle_seconds", self.idle_seconds, example="5")
        check_whole("log_every_n_steps", self.log_every_n_steps, 1)
        self.intensity = carbon_intensity(self.country, self.carbon_g_per_kwh)
        co2e_g(0.0, self.intensity, self.pue)  # validates pue
        self.pue = float(self.pue)

    def carbon_params(self) -> dict[str, Any]:
        return {"carbon_intensity_g_per_kwh": self.intensity.g_per_kwh,
                "carbon_intensity_source": self.intensity.source, "pue": self.pue}


class MeteredRun:
    """Meters one run (a Lightning stage, a Trainer.train, a loop) and delivers its figures to ``sinks``.

    Args:
        name: the stage (``fit``, ``test``, ``train``, ``run``): names end-of-run metrics and artifacts.
        sources: this process's share of the power sources.
        idle: an idle baseline measured before (reused across stages); else measured now if configured.
        fallback_dir: where artifacts go when some destination has no artifact store.
        xlabel: what a step is (``step`` or ``seconds``), for the plot.
    """

    def __init__(self, name: str, config: MeterConfig, sinks: Sinks, sources: list[PowerSource], *,
                 idle: EnergyResult | None = None, fallback_dir: Path | None = None, xlabel: str = "step") -> None:
        self.name = name
        self.config = config
        self.sinks = sinks
        self.fallback_dir = fallback_dir or Path(names.ARTIFACT_DIR)
        self.xlabel = xlabel
        self.meter = EnergyMeter(config.interval, sources=sources, name=name)
        if idle is not None:
            self.meter.idle = idle
        elif config.idle_seconds:
            self.meter.measure_idle(config.idle_seconds)
        self.steps: StepLog = StepLog()  # for the end-of-run plot: 8 bytes per number, no object per step
        self.summary: dict[str, Any] = {}
        self.finished = False
        self._epoch_start: dict[str, float] = {}
        self._nested_J = 0.0
        self._marks = 0
        self.meter.start()
        self.stream = EnergyStream(self.meter, self._collect, every_n_steps=config.log_every_n_steps,
                                   origin=self.meter.start_time).start()

    @property
    def idle(self) -> EnergyResult | None:
        return self.meter.idle

    def _collect(self, batch: Sequence[StepMetrics]) -> None:
        self.steps.extend(batch)
        self.sinks(batch)

    # -- the hot path ------------------------------------------------------------------------------------
    def step(self, step: int) -> None:
        """Step ``step`` ended now (an optimiser step): a deque append; other loggers are fed every 50."""
        self.stream.mark(step)
        self._marks += 1
        if self.sinks.others and self._marks % 50 == 0:
            self.sinks.flush()

    # -- epochs ------------------------------------------------------------------------------------------
    def epoch_start(self, loop: str) -> None:
        """An epoch of ``loop`` (train, val, test, predict) begins."""
        self._epoch_start[loop] = self.meter.now()
        self.meter.anchor()  # a counter read near the epoch's start (its end forces one)
        if loop == "train":
            self._nested_J = 0.0

    def epoch_end(self, loop: str, step: int, reduce: Reduce | None = None, log: bool = True) -> float:
        """Energy of the epoch (summed over processes by ``reduce``), logged as ``energy/{loop}_epoch_J``.

        Validation that runs inside a training epoch counts as validation's, not training's.
        """
        start = self._epoch_start.pop(loop, None)
        local = self.meter.energy(start, self.meter.now(), loop).total_J if start is not None else 0.0
        if loop == "train":
            local -= self._nested_J
            self._nested_J = 0.0
        elif "train" in self._epoch_start:
            self._nested_J += local
        total = reduce(local) if reduce is not None else local
        if log and self.sinks:
            self.sinks.log_now({names.epoch_energy(loop): total,
                                names.epoch_co2e(loop): co2e_g(total, self.config.intensity, self.config.pue)}, step)
        return total

    # -- once per run ------------------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params of this run, logged under ``green_mlops.`` (never a user's name)."""
        if self.sinks:
            self.sinks.log_params(params)

    def finish(self, status: str, *, step: int | None, reduce: Reduce | None = None,
               error: BaseException | None = None,
               figures: Callable[[EnergyResult, float], Mapping[str, float | None]] | None = None) -> dict[str, Any]:
        """Stop metering; log the end-of-run figures, summary and artifacts; close the sinks. Idempotent.

        ``figures(result, total_J)`` returns extra end-of-run figures by bare name (logged as ``green_mlops/…``).
        ``step`` None: steps are seconds, and the run's end is marked as step ⌈duration⌉ (``autolog``).
        """
        if self.finished:
            return self.summary
        self.finished = True
        result = self.meter.stop()
        if step is None:
            step = math.ceil(result.duration_s)
            self.stream.mark(step, result.end)
        self.stream.close()
        local = result.total_J
        total = reduce(local) if reduce is not None and error is None else local
        cfg = self.config
        summary: dict[str, Any] = {"stage": self.name, "status": status, "energy_J": total,
                                   "co2e_g": co2e_g(total, cfg.intensity, cfg.pue),
                                   "carbon_intensity": vars(cfg.intensity), "pue": cfg.pue,
                                   "local": result.as_dict(), "duration_s": result.duration_s}
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        end = {names.energy(self.name): total, names.co2e(self.name): summary["co2e_g"],
               names.duration(self.name): result.duration_s}
        vector = stage_vector(result)  # per device, gross and net of idle, over the window of time/{stage}_s
        end.update(stage_metrics(self.name, reduce(vector) if reduce is not None and error is None else vector))
        if figures is not None:
            try:
                end.update({names.metric(k): v for k, v in figures(result, total).items() if v is not None})
            except Exception as exc:
                log.warning("green_mlops: end-of-run figures of %s skipped: %s", self.name, exc)
        summary["metrics"] = end
        self.summary.update(summary)
        where: list[str] = []
        files = None
        try:
            if self.sinks.files:
                self.sinks.flush()
                self.sinks.log_now(end, step)
                files = start_run_artifacts(self.meter, self.steps, self.summary, self.name, xlabel=self.xlabel)
        except Exception as exc:  # the metrics already queued must still be delivered
            log.warning("green_mlops: logging the %s summary failed: %s", self.name, exc)
        finally:
            self.sinks.close()  # waits for the last delivery while the files are being written
        if files is not None:
            try:
                where = self.sinks.log_artifacts(files.result(), self.fallback_dir)
            except Exception as exc:
                log.warning("green_mlops: writing the %s artifacts failed: %s", self.name, exc)
        if cfg.print_summary and self.sinks.files:
            try:
                print(summary_line(self.name, status, total, result if reduce is None else None, where),
                      file=sys.stderr, flush=True)
            except Exception as exc:  # a closed stderr must not end the user's run
                log.warning("green_mlops: could not print the %s summary: %s", self.name, exc)
        return self.summary

    def energy_since(self, start: float = 0.0) -> float:
        """Energy (J, this process) from ``start`` (a ``time.monotonic()`` time; the run's start if earlier) to now."""
        return self.meter.energy(max(start, self.meter.start_time or start), self.meter.now()).total_J

    def utilisation(self) -> float | None:
        """Mean utilisation (0–1) over the run: GPUs' where there are any, else the CPUs'."""
        if not len(self.meter.trace):
            return None
        df = self.meter.to_frame()
        cols = [c for c in df.columns if c.endswith(".util_pct") and c.startswith("gpu")] or ["host.cpu_util_pct"]
        vals = df[[c for c in cols if c in df]].mean().mean()
        return float(vals) / 100 if math.isfinite(vals) else None


class NullRun:
    """A run of a process that meters nothing: the same methods, no meter; it still joins every reduction."""

    name = "none"
    idle = None
    steps: Sequence[StepMetrics] = ()

    def __init__(self, sinks: Sinks | None = None) -> None:
        self.sinks = sinks if sinks is not None else Sinks()
        self.summary: dict[str, Any] = {}
        self.finished = False

    def step(self, step: int) -> None:
        pass

    def epoch_start(self, loop: str) -> None:
        pass

    def epoch_end(self, loop: str, step: int, reduce: Reduce | None = None, log: bool = True) -> float:
        return reduce(0.0) if reduce is not None else 0.0

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def finish(self, status: str, *, step: int, reduce: Reduce | None = None, error: BaseException | None = None,
               figures: Any = None) -> dict[str, Any]:
        if not self.finished:
            self.finished = True
            if reduce is not None and error is None:  # the same collectives, in the same order, as MeteredRun
                reduce(0.0)
                reduce(stage_vector(None))
            self.sinks.close()
        return self.summary

    def energy_since(self, start: float = 0.0) -> float:
        return 0.0

    def utilisation(self) -> float | None:
        return None
