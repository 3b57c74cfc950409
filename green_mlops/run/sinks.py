"""Where a metered run's figures go: MLflow runs through batched writers, any other logger on the caller's thread.

An MLflow run is written from background threads (per-step metrics through :class:`~green_mlops.mlflow.MetricWriter`);
any other destination (a Lightning logger, ``Trainer.log`` of Hugging Face) gets the same metrics from the
training thread, at the next :meth:`Sinks.flush`. A destination that refuses something is warned about once
and skipped from then on for that kind of write; training never stops for it.
"""
from __future__ import annotations

import collections
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from green_mlops import names
from green_mlops.run.stream import StepBlock, StepMetrics

log = logging.getLogger(__name__)


def _copy(f: Path) -> Path:
    """A copy of ``f`` in a temporary folder of its own (each MLflow run's upload removes its folder)."""
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="green_mlops_")) / f.name
    shutil.copyfile(f, out)
    return out


class Logger(Protocol):
    """Anything that takes metrics by step and params: Lightning's loggers have exactly these two methods."""

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def log_hyperparams(self, params: Any) -> None: ...


@dataclass
class FunctionLogger:
    """A :class:`Logger` from two callables (``Trainer.log`` of Hugging Face, a user's function)."""

    metrics: Callable[[dict[str, float], int], None]
    params: Callable[[dict[str, Any]], None] | None = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics(metrics, int(step or 0))

    def log_hyperparams(self, params: Any) -> None:
        if self.params is not None:
            self.params(dict(params))


@dataclass(frozen=True)
class MlflowRun:
    """An MLflow run to write to: its client (for params and artifacts), id and tracking URI (for the writer)."""

    client: Any
    run_id: str
    tracking_uri: str


class Sinks:
    """The destinations of one metered run; ``others`` receive metrics only from the caller's thread."""

    def __init__(self, mlflow_runs: list[MlflowRun] = (), others: list[Logger] = (),  # type: ignore[assignment]
                 files: bool = False) -> None:
        from green_mlops.mlflow.writer import MetricWriter

        self.files = files or bool(mlflow_runs or others)  # write the artifacts (a local folder if nowhere else)
        self.mlflow_runs = list(mlflow_runs)
        self.others = list(others)
        self.writers = [MetricWriter(r.run_id, r.tracking_uri) for r in self.mlflow_runs]
        self._queue: collections.deque[StepMetrics] = collections.deque()  # filled by the stream's thread
        self._warned: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.mlflow_runs or self.others)

    def __call__(self, batch: Sequence[StepMetrics]) -> None:
        """Called from the stream's thread: MLflow now (a :class:`StepBlock` whole), other loggers at the next
        :meth:`flush`."""
        for w in self.writers:
            if isinstance(batch, StepBlock):
                w.log_block(batch.keys, batch.steps, batch.times_ms, batch.values)
                continue
            for step, ts, metrics in batch:
                w.log_many(metrics, step, ts)
        if self.others:
            self._queue.extend(batch)

    def _warn_once(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("green_mlops: %s failed (%s: %s); training goes on, the energy is kept in the run's "
                        "summary", what, type(exc).__name__, exc)

    def flush(self) -> None:
        """Hand queued step metrics to the other loggers (call from the training thread)."""
        if not self._queue:
            return
        batch = []
        while self._queue:
            batch.append(self._queue.popleft())
        for lg in self.others:
            for step, _, metrics in batch:
                try:
                    lg.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=step)
                except Exception as exc:
                    self._warn_once(f"logging step metrics to {type(lg).__name__}", exc)

    def log_now(self, metrics: Mapping[str, float | None], step: int) -> None:
        """Epoch and end-of-run figures: few, so they go out at once."""
        finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}
        for w in self.writers:
            w.log_many(finite, step, int(time.time() * 1000))
        for lg in self.others:
            try:
                lg.log_metrics(finite, step=step)
            except Exception as exc:
                self._warn_once(f"logging metrics to {type(lg).__name__}", exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params under green_mlops' namespace; one MLflow refuses (a value already set differently) is skipped."""
        from mlflow.entities import Param

        named = {names.param(k): v for k, v in params.items()}
        for r in self.mlflow_runs:
            have = _run_params(r)
            todo = [Param(k, str(v)) for k, v in named.items() if k not in have]
            clash = sorted(k for k, v in named.items() if k in have and have[k] != str(v))
            if clash:
                self._warn_once(f"logging params to MLflow run {r.run_id}",
                                ValueError(f"already set to other values: {', '.join(clash)}"))
            try:
                if todo:
                    r.client.log_batch(r.run_id, params=todo)
            except Exception as exc:
                self._warn_once(f"logging params to MLflow run {r.run_id}", exc)
        for lg in self.others:
            try:
                lg.log_hyperparams(named)
            except Exception as exc:
                self._warn_once(f"logging params to {type(lg).__name__}", exc)

    def log_artifacts(self, files: list[Path], fallback_dir: Path) -> list[str]:
        """Copies for other loggers first; then each MLflow run (fast-failing; kept for ``green-mlops sync`` when
        the server is down). Returns where the files went, for the end-of-run line."""
        from green_mlops.mlflow.uploads import remove_temp_folders, upload_artifacts
        from green_mlops.redact import redact_uri

        where = []
        if self.others or not self.mlflow_runs:
            fallback_dir.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(f, fallback_dir / f.name)
            where.append(f"{fallback_dir.resolve()}/")
            if not self.mlflow_runs:
                remove_temp_folders(files)
        for i, r in enumerate(self.mlflow_runs):
            last = i == len(self.mlflow_runs) - 1
            try:
                kept = upload_artifacts(r.client, r.run_id, files if last else [_copy(f) for f in files])
            except Exception as exc:
                self._warn_once(f"storing artifacts in MLflow run {r.run_id}", exc)
                continue
            uri = redact_uri(r.tracking_uri)
            where.append(f"MLflow run {r.run_id} at {uri} (artifacts under {names.ARTIFACT_DIR}/)" if kept is None
                         else f"{kept}/ (MLflow at {uri} unreachable; `green-mlops sync` uploads them)")
        return where

    def close(self) -> None:
        self.flush()
        for w in self.writers:
            w.close()


def _run_params(r: MlflowRun) -> dict[str, str]:
    try:
        return dict(r.client.get_run(r.run_id).data.params)
    except Exception:
        return {}
