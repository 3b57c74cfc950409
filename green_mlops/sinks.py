"""Where the EnergyCallback's metrics and files go: MLflow runs through a batched writer, any other
Lightning logger on the training thread, and a folder when no MLflow run takes the files."""
from __future__ import annotations

import collections
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from green_mlops.stream import StepMetrics


class Sinks:
    """Where step metrics go: MLflow runs through a batched writer, other loggers on the main thread."""

    def __init__(self, trainer: pl.Trainer) -> None:
        from pytorch_lightning.loggers import MLFlowLogger

        self.writers = []
        self.others = []
        self.mlflow_runs: list[tuple[Any, str]] = []
        self._queue: collections.deque[StepMetrics] = collections.deque()  # filled by the stream's thread
        for lg in trainer.loggers if trainer.is_global_zero else []:
            if isinstance(lg, MLFlowLogger):
                from green_mlops.mlflow.writer import MetricWriter

                self.writers.append(MetricWriter(lg.run_id, lg._tracking_uri))
                self.mlflow_runs.append((lg.experiment, lg.run_id))
            else:
                self.others.append(lg)

    def __call__(self, batch: list[StepMetrics]) -> None:
        """Called from the stream's thread: MLflow now, other loggers at the next main-thread flush."""
        for w in self.writers:
            for step, ts, metrics in batch:
                w.log_many(metrics, step, ts)
        if self.others:
            self._queue.extend(batch)

    def flush_main_thread(self) -> None:
        batch = []
        while self._queue:
            batch.append(self._queue.popleft())
        for lg in self.others:
            for step, _, metrics in batch:
                lg.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=step)

    def log_now(self, metrics: dict[str, float], step: int) -> None:
        """Epoch and end-of-run figures: few, so they go out at once from the main thread."""
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        for w in self.writers:
            w.log_many(finite, step, int(time.time() * 1000))
        for lg in self.others:
            lg.log_metrics(finite, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        for client, run_id in self.mlflow_runs:
            from mlflow.entities import Param

            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        for lg in self.others:
            lg.log_hyperparams(params)

    def log_artifacts(self, files: list[Path], fallback_dir: Path) -> list[str]:
        """Attach the files to each MLflow run, else copy them to ``fallback_dir``; say where they went."""
        where = []
        for client, run_id in self.mlflow_runs:
            for f in files:
                client.log_artifact(run_id, str(f), artifact_path="green_mlops")
            where.append(f"MLflow run {run_id} at {client.tracking_uri} (artifacts under green_mlops/)")
        if self.others or not self.mlflow_runs:
            fallback_dir.mkdir(parents=True, exist_ok=True)
            for f in files:
                (fallback_dir / f.name).write_bytes(f.read_bytes())
            where.append(f"{fallback_dir.resolve()}/")
        return where

    def close(self) -> None:
        self.flush_main_thread()
        for w in self.writers:
            w.close()
