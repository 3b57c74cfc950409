"""``EnergyCallback``: per-step GPU, CPU and DRAM power and energy in any Lightning logger.

Works with ``lightning.pytorch.Trainer`` and ``pytorch_lightning.Trainer`` alike (either package, or both,
installed). Every hook only records a timestamp (the training step pays microseconds); sampling, attribution
of energy to steps and logging happen on background threads. An ``MLFlowLogger`` of either package gets its
metrics straight from a batched writer that never loses data, and the trace, plot and summary as artifacts.
A thin adapter: each hook is one call into the metered-run core (:mod:`green_mlops.run.core`).

    trainer = L.Trainer(callbacks=[EnergyCallback(idle_seconds=5)], logger=MLFlowLogger(...))
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from green_mlops import names
from green_mlops.integrations.lightning_base import CALLBACK_BASES, mlflow_run
from green_mlops.meter import EnergyResult, PowerSource, Settings
from green_mlops.run.core import MeterConfig, MeteredRun, NullRun
from green_mlops.run.figures import batch_size, find_accuracy, first_array, model_params, training_figures
from green_mlops.run.sinks import Sinks
from green_mlops.run.sources import process_sources
from green_mlops.run.stream import StepMetrics

log = logging.getLogger(__name__)


def _sinks(trainer: Any) -> Sinks:
    """MLflow loggers (of either package) through writers, every other logger by ``log_metrics``; rank 0 only."""
    runs, others = [], []
    for lg in trainer.loggers if trainer.is_global_zero else []:
        try:
            run = mlflow_run(lg)
        except Exception as exc:
            log.warning("green_mlops: MLflow logger unusable (%s); its run gets no energy metrics", exc)
            continue
        if run is not None:
            runs.append(run)
        else:
            others.append(lg)
    return Sinks(runs, others, files=trainer.is_global_zero)


class EnergyCallback(*CALLBACK_BASES):  # type: ignore[misc]
    """Meters every fit, validate, test and predict run and logs energy per step, per epoch and at the end.

    Args:
        interval: sampling interval in seconds (default 0.1).
        idle_seconds: measure idle power this long before the first run; enables ``energy/net_J``.
        log_every_n_steps: publish step metrics every n optimiser steps (power is averaged over them).
        country / carbon_g_per_kwh / pue: carbon intensity for ``co2e_g`` (see :mod:`green_mlops.metrics.emissions`).
        accuracy_key: the logged metric to use as accuracy in the paper's metrics (default: first
            metric whose name contains "acc", validation preferred).
        output_dir: where artifacts go for loggers other than MLflow (default: the trainer's log dir).
        sources: power sources to use instead of discovering them (tests, custom hardware).
        print_summary: print one line to stderr at the end of each metered run (energy, provenance, where
            the metrics and files went), whatever the logger.
    """

    def __init__(self, interval: float = 0.1, idle_seconds: float = 0.0, log_every_n_steps: int = 1, *,
                 country: str | None = None, carbon_g_per_kwh: float | None = None, pue: float = 1.0,
                 accuracy_key: str | None = None, output_dir: str | Path | None = None,
                 settings: Settings | None = None, sources: list[PowerSource] | None = None,
                 print_summary: bool = True) -> None:
        super().__init__()
        self.config = MeterConfig(interval, idle_seconds, log_every_n_steps, country, carbon_g_per_kwh, pue, settings,
                             print_summary)
        self.accuracy_key = accuracy_key
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._given_sources = sources
        self._idle: EnergyResult | None = None
        self.run: MeteredRun | NullRun | None = None
        self.summary: dict[str, Any] = {}
        self._samples: dict[str, int] = {}
        self._loop_energy: dict[str, float] = {}
        self._stats_pending = False

    # the settings and the metered run's parts, for code that reads them (EnergyBudget, tests)
    @property
    def intensity(self) -> Any:
        return self.config.intensity

    @property
    def pue(self) -> float:
        return self.config.pue

    @property
    def meter(self) -> Any:
        return getattr(self.run, "meter", None)

    @property
    def steps(self) -> Sequence[StepMetrics]:
        return self.run.steps if self.run is not None else []

    def energy_so_far(self) -> float | None:
        """Energy this process metered since the run began (J), or None before it began."""
        meter = self.meter
        return meter.energy(meter.start_time, meter.now(), "so far").total_J if meter is not None else None

    # -- set-up and tear-down of one run (fit, validate, test, predict) ------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))  # Lightning passes a TrainerFn enum
        self._samples = {"train": 0, "test": 0, "predict": 0, "validate": 0}
        self._loop_energy = {}
        self.summary = {}
        root = trainer.strategy.root_device
        if self._given_sources is not None:
            sources = list(self._given_sources)
        else:
            sources = process_sources(self.config.settings, world_size=trainer.world_size,
                                      local_rank=trainer.local_rank,
                                      gpu_index=root.index if root.type == "cuda" else None)
        sinks = _sinks(trainer)
        if not sources:
            log.info("green_mlops: rank %d meters nothing (its GPU and host are metered by other ranks)",
                     trainer.global_rank)
            self.run = NullRun(sinks)
            return
        self.run = MeteredRun(stage, self.config, sinks, sources, idle=self._idle,
                              fallback_dir=self._artifact_dir(trainer))
        self._idle = self.run.idle
        self.summary = self.run.summary
        self._stats_pending = stage == "fit"

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._finish(trainer, pl_module, status="success")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._finish(trainer, pl_module, status="failed", error=exception)

    # -- the hot path -------------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._stats_pending:
            x = first_array(batch)
            self._log_model_stats(trainer, pl_module, x if isinstance(x, torch.Tensor) else None)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.run is not None:
            self.run.step(trainer.global_step)
        self._samples["train"] += batch_size(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._samples["test"] += batch_size(batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._samples["predict"] += batch_size(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._samples["validate"] += batch_size(batch)

    # -- epochs -------------------------------------------------------------------------------------------
    def _epoch_begin(self, loop: str) -> None:
        if self.run is not None:
            self.run.epoch_start(loop)

    def _epoch_end(self, trainer: Any, pl_module: Any, loop: str) -> None:
        if self.run is None:
            return
        total = self.run.epoch_end(loop, trainer.global_step, self._reducer(trainer, pl_module))
        self._loop_energy[loop] = self._loop_energy.get(loop, 0.0) + total

    def _reducer(self, trainer: Any, pl_module: Any) -> Any:
        """Sum over ranks (each rank metered only its own GPU, and CPU/DRAM once per host)."""
        if trainer.world_size <= 1:
            return None

        def reduce(value: Any) -> Any:  # a number or a list of numbers, in one collective call
            t = torch.tensor(value if isinstance(value, list) else [value], dtype=torch.float64, device=pl_module.device)
            out = trainer.strategy.reduce(t, reduce_op="sum").tolist()
            return out if isinstance(value, list) else out[0]
        return reduce

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_begin("train")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, pl_module, "train")

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._epoch_begin("val")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._epoch_end(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_begin("test")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, pl_module, "test")

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_begin("predict")

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, pl_module, "predict")

    # -- once per run -------------------------------------------------------------------------------------
    def _log_model_stats(self, trainer: Any, pl_module: Any, x: torch.Tensor | None) -> None:
        self._stats_pending = False
        example = getattr(pl_module, "example_input_array", None)
        stats = model_params(pl_module, example if isinstance(example, torch.Tensor) else x)
        if stats is None or self.run is None:
            return
        self.summary["model"] = stats
        self.run.log_params({**stats, **self.config.carbon_params()})

    def _finish(self, trainer: Any, pl_module: Any, status: str, error: BaseException | None = None) -> None:
        run = self.run
        if run is None or run.finished:
            return
        stage = run.name
        reduce = self._reducer(trainer, pl_module) if error is None else None  # after a failure ranks may be gone
        samples = self._samples_of_all_ranks(reduce)

        def figures(result: EnergyResult, total: float) -> dict[str, float | None]:
            if stage == "fit":
                return training_figures(result, total, train_J=self._loop_energy.get("train", total),
                                        samples=samples["train"],
                                        accuracy=find_accuracy(trainer.callback_metrics, self.accuracy_key),
                                        model=self.summary.get("model"), utilisation=run.utilisation())
            if stage in ("test", "predict") and samples[stage]:
                return {names.ENERGY_PER_SAMPLE_INFERENCE: self._loop_energy.get(stage, total) / samples[stage]}
            return {}

        run.finish(status, step=trainer.global_step, reduce=reduce, error=error, figures=figures)
        self.summary = run.summary

    def _samples_of_all_ranks(self, reduce: Any) -> dict[str, int]:
        """Samples each loop ran on, summed over ranks like the energy they are divided into (one collective,
        made by every rank, metering or not, before the run's own reductions); this rank's alone without one."""
        if reduce is None:
            return dict(self._samples)
        summed = reduce([float(n) for n in self._samples.values()])
        return {loop: round(n) for loop, n in zip(self._samples, summed)}

    def _artifact_dir(self, trainer: Any) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        lg = trainer.loggers[0] if trainer.loggers else None  # as trainer.log_dir, without its DDP broadcast,
        root = getattr(lg, "log_dir", None) or getattr(lg, "save_dir", None)  # which rank 0 alone would enter
        return Path(root or trainer.default_root_dir) / names.ARTIFACT_DIR
