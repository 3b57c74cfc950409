"""``EnergyCallback``: per-step GPU, CPU and DRAM power and energy in any Lightning logger.

Add it to a Trainer; every hook only records a timestamp (the training step pays microseconds).
Sampling, attribution of energy to steps and logging happen on background threads; with an
``MLFlowLogger`` metrics go straight to MLflow through a batched writer that never loses data.

    trainer = pl.Trainer(callbacks=[EnergyCallback(idle_seconds=5)], logger=MLFlowLogger(...))
"""
from __future__ import annotations

import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from green_mlops.artifacts import summary_line, write_run_artifacts
from green_mlops.emissions import CarbonIntensity, carbon_intensity, co2e_g
from green_mlops.meter import EnergyMeter, EnergyResult, Settings, discover
from green_mlops.meter.host import memory_total_bytes
from green_mlops.meter.meter import validate_interval
from green_mlops.meter.source import PowerSource
from green_mlops.metrics import derived_metrics
from green_mlops.model_stats import model_stats
from green_mlops.sinks import Sinks
from green_mlops.stage_energy import stage_metrics, stage_vector
from green_mlops.stream import EnergyStream, StepMetrics

log = logging.getLogger(__name__)

_ACC = re.compile(r"(^|[/_])acc(uracy)?($|[/_])", re.I)


def _first_tensor(batch: Any) -> torch.Tensor | None:
    """The first tensor of a batch (nested lists, tuples and dicts are followed), or None."""
    while isinstance(batch, (list, tuple, dict)):
        if not batch:
            return None
        batch = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return batch if isinstance(batch, torch.Tensor) else None


def _batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (0 when there is none)."""
    x = _first_tensor(batch)
    return int(x.shape[0]) if x is not None and x.dim() > 0 else 0


class EnergyCallback(pl.Callback):
    """Meters every fit, test and predict run and logs energy per step, per epoch and at the end.

    Args:
        interval: sampling interval in seconds (default 0.1).
        idle_seconds: measure idle power this long before the first run; enables ``energy/net_J``.
        log_every_n_steps: publish step metrics every n optimiser steps (power is averaged over them).
        country / carbon_g_per_kwh / pue: carbon intensity for ``co2e_g`` (see :mod:`green_mlops.emissions`).
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
        self.interval = validate_interval(interval)
        if not (isinstance(idle_seconds, (int, float)) and idle_seconds >= 0 and math.isfinite(idle_seconds)):
            raise ValueError(f"idle_seconds must be 0 or more seconds (e.g. 5); got {idle_seconds!r}")
        if not (isinstance(log_every_n_steps, int) and log_every_n_steps >= 1):
            raise ValueError(f"log_every_n_steps must be a whole number ≥ 1; got {log_every_n_steps!r}")
        self.intensity: CarbonIntensity = carbon_intensity(country, carbon_g_per_kwh)
        co2e_g(0.0, self.intensity, pue)  # validates pue now, before any training starts
        self.idle_seconds = float(idle_seconds)
        self.log_every_n_steps = log_every_n_steps
        self.pue = float(pue)
        self.accuracy_key = accuracy_key
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.settings = settings
        self._given_sources = sources
        self.print_summary = print_summary
        self._idle: EnergyResult | None = None
        self.meter: EnergyMeter | None = None
        self.stream: EnergyStream | None = None
        self.steps: list[StepMetrics] = []
        self.summary: dict[str, Any] = {}
        self._reset()

    # -- set-up and tear-down of one run (fit, test, predict) ---------------------------------------
    def _reset(self) -> None:
        self.meter = None
        self.stream = None
        self._sinks: Sinks | None = None
        self._stage: str | None = None
        self._epoch_start: dict[str, float] = {}
        self._nested_val_J = 0.0
        self._samples: dict[str, int] = {"train": 0, "test": 0, "predict": 0, "validate": 0}
        self._loop_energy: dict[str, float] = {}
        self._stats_pending = False
        self._finished = False

    def _sources(self, trainer: pl.Trainer) -> list[PowerSource]:
        """This rank's share: its own GPU; CPU and DRAM only on each host's local rank 0."""
        if self._given_sources is not None:
            return list(self._given_sources)
        found = discover(self.settings or Settings.from_env())
        root = trainer.strategy.root_device
        mine = []
        for s in found.sources:
            if s.info.domain == "gpu":
                if trainer.world_size > 1 and root.type == "cuda" and getattr(s, "index", None) != root.index:
                    s.close()
                    continue
            elif trainer.local_rank != 0:
                continue
            mine.append(s)
        return mine

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._reset()
        stage = str(getattr(stage, "value", stage))  # Lightning passes a TrainerFn enum
        self._stage = stage
        sources = self._sources(trainer)
        self._sinks = Sinks(trainer)
        if not sources:
            log.info("green_mlops: rank %d meters nothing (its GPU and host are metered by other ranks)",
                     trainer.global_rank)
            return
        self.meter = EnergyMeter(self.interval, sources=sources, name=stage)
        if self.idle_seconds and self._idle is None:
            self._idle = self.meter.measure_idle(self.idle_seconds)
        elif self._idle is not None:
            self.meter.idle = self._idle
        self.meter.start()
        self.steps = []
        self.stream = EnergyStream(self.meter, self._collect, every_n_steps=self.log_every_n_steps,
                                   origin=self.meter.start_time).start()
        self._stats_pending = stage == "fit"

    def _collect(self, batch: list[StepMetrics]) -> None:
        self.steps.extend(batch)
        if self._sinks is not None:
            self._sinks(batch)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._finish(trainer, pl_module, status="success")

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._finish(trainer, pl_module, status="failed", error=exception)

    # -- the hot path -------------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._stats_pending:
            self._log_model_stats(trainer, pl_module, _first_tensor(batch))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.stream is not None:
            self.stream.mark(trainer.global_step)
        self._samples["train"] += _batch_size(batch)
        if self._sinks is not None and self._sinks.others and batch_idx % 50 == 0:
            self._sinks.flush_main_thread()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._samples["test"] += _batch_size(batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._samples["predict"] += _batch_size(batch)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._samples["validate"] += _batch_size(batch)

    # -- epochs ------------------------------------------------------------------------------------
    def _epoch_begin(self, loop: str) -> None:
        if self.meter is not None:
            self._epoch_start[loop] = self.meter.now()
        if loop == "train":
            self._nested_val_J = 0.0

    def _epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loop: str) -> None:
        start = self._epoch_start.pop(loop, None)
        local = self.meter.energy(start, self.meter.now(), loop).total_J if (self.meter and start) else 0.0
        if loop == "train":  # Lightning validates inside the training epoch: that energy is val's, not train's
            local -= self._nested_val_J
            self._nested_val_J = 0.0
        elif loop == "val" and "train" in self._epoch_start:
            self._nested_val_J += local
        total = self._reduce(trainer, pl_module, local)
        self._loop_energy[loop] = self._loop_energy.get(loop, 0.0) + total
        if trainer.is_global_zero and self._sinks is not None:
            self._sinks.log_now({f"energy/{loop}_epoch_J": total,
                                 f"co2e/{loop}_epoch_g": co2e_g(total, self.intensity, self.pue)},
                                step=trainer.global_step)

    def _reduce(self, trainer: pl.Trainer, pl_module: pl.LightningModule, value: Any) -> Any:
        """Sum a number or a list of numbers over ranks (each metered only its own GPU, and CPU/DRAM once per host)."""
        if trainer.world_size <= 1:
            return value
        t = torch.tensor(value if isinstance(value, list) else [value], dtype=torch.float64, device=pl_module.device)
        out = trainer.strategy.reduce(t, reduce_op="sum").tolist()
        return out if isinstance(value, list) else out[0]

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

    # -- once per run --------------------------------------------------------------------------------
    def _log_model_stats(self, trainer: pl.Trainer, pl_module: pl.LightningModule, x: torch.Tensor | None) -> None:
        self._stats_pending = False
        example = getattr(pl_module, "example_input_array", None)
        example = example if isinstance(example, torch.Tensor) else x
        try:
            stats = model_stats(pl_module, example[:1] if example is not None else None)
        except Exception as exc:  # noqa: BLE001 - characteristics are a bonus; training goes on
            log.warning("green_mlops: could not compute model characteristics: %s", exc)
            return
        self.summary["model"] = stats.as_params()
        if trainer.is_global_zero and self._sinks is not None:
            self._sinks.log_params({**stats.as_params(), "carbon_intensity_g_per_kwh": self.intensity.g_per_kwh,
                                    "carbon_intensity_source": self.intensity.source, "pue": self.pue})

    def _accuracy(self, trainer: pl.Trainer) -> float | None:
        metrics = {k: v for k, v in trainer.callback_metrics.items()}
        if self.accuracy_key:
            v = metrics.get(self.accuracy_key)
            return float(v) if v is not None else None
        keys = sorted((k for k in metrics if _ACC.search(k)), key=lambda k: (not k.startswith("val"), k))
        return float(metrics[keys[0]]) if keys else None

    def _finish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, status: str,
                error: BaseException | None = None) -> None:
        if self._finished or self._stage is None:
            return
        self._finished = True
        stage, meter = self._stage, self.meter
        result = meter.stop() if meter is not None else None
        if self.stream is not None:
            self.stream.close()
        sinks = self._sinks
        local_total = result.total_J if result is not None else 0.0
        total = self._reduce(trainer, pl_module, local_total) if error is None else local_total
        summary: dict[str, Any] = {"stage": stage, "status": status, "energy_J": total,
                                   "co2e_g": co2e_g(total, self.intensity, self.pue),
                                   "carbon_intensity": vars(self.intensity), "pue": self.pue}
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        if result is not None:
            summary["local"] = result.as_dict()
            summary["duration_s"] = result.duration_s
        end_metrics: dict[str, float] = {f"energy/{stage}_J": total, f"co2e/{stage}_g": summary["co2e_g"],
                                         f"time/{stage}_s": summary.get("duration_s", float("nan"))}
        vector = stage_vector(result)  # per device, gross and net of idle, over the same window as time/{stage}_s
        end_metrics.update(stage_metrics(stage, self._reduce(trainer, pl_module, vector) if error is None else vector))
        if stage == "fit" and self._samples["train"]:
            train_J = self._loop_energy.get("train", total)
            end_metrics["energy_per_sample_train_J"] = train_J / self._samples["train"]
            end_metrics.update(self._paper_metrics(trainer, result, total))
        for loop in ("test", "predict"):
            if stage == loop and self._samples[loop]:
                end_metrics["energy_per_sample_inference_J"] = self._loop_energy.get(loop, total) / self._samples[loop]
        summary["metrics"] = end_metrics
        self.summary.update(summary)
        if sinks is not None and trainer.is_global_zero:
            where: list[str] = []
            try:
                sinks.flush_main_thread()
                sinks.log_now(end_metrics, step=trainer.global_step)
                if meter is not None:
                    where = sinks.log_artifacts(write_run_artifacts(meter, self.steps, self.summary, stage),
                                                self._artifact_dir(trainer))
            except Exception as exc:  # noqa: BLE001 - the metrics already queued must still be delivered
                log.warning("green_mlops: logging the %s summary failed: %s", stage, exc)
            finally:
                sinks.close()
            if self.print_summary and result is not None:
                try:
                    print(summary_line(stage, status, total, result if trainer.world_size == 1 else None, where),
                          file=sys.stderr, flush=True)
                except Exception as exc:  # noqa: BLE001 - a closed stderr must not end the user's run
                    log.warning("green_mlops: could not print the %s summary: %s", stage, exc)

    def _paper_metrics(self, trainer: pl.Trainer, result: EnergyResult | None, total: float) -> dict[str, float]:
        stats = self.summary.get("model", {})
        duration = result.duration_s if result is not None else None
        inputs = {
            "energy_J": total, "samples": self._samples["train"], "duration_s": duration,
            "accuracy": self._accuracy(trainer), "macs": stats.get("macs"),
            "trainable_params": stats.get("trainable_params"), "total_params": stats.get("total_params"),
            "model_size_bytes": stats.get("model_size_bytes"),
            "gpu_energy_J": result.domain_J("gpu") if result is not None else None,
            "utilisation": self._utilisation(), "ram_bytes": memory_total_bytes(),
        }
        try:
            return {k: v for k, v in derived_metrics(**inputs).items() if v is not None}
        except TypeError as exc:
            log.warning("green_mlops: paper metrics skipped: %s", exc)
            return {}

    def _utilisation(self) -> float | None:
        """Mean utilisation (0–1) over the run: GPUs' where there are any, else the CPUs'."""
        if self.meter is None or not len(self.meter.trace):
            return None
        df = self.meter.to_frame()
        cols = [c for c in df.columns if c.endswith(".util_pct") and c.startswith("gpu")] or ["host.cpu_util_pct"]
        vals = df[[c for c in cols if c in df]].mean().mean()
        return float(vals) / 100 if math.isfinite(vals) else None

    def _artifact_dir(self, trainer: pl.Trainer) -> Path:
        if self.output_dir is not None:
            return self.output_dir
        lg = trainer.loggers[0] if trainer.loggers else None  # as trainer.log_dir, without its DDP broadcast,
        root = getattr(lg, "log_dir", None) or getattr(lg, "save_dir", None)  # which rank 0 alone would enter
        return Path(root or trainer.default_root_dir) / "green_mlops"
