"""Plain PyTorch loops: ``with metered_training() as run:`` around the loop, ``run.step()`` per optimiser step.

The same per-step metrics at the same step numbers as the Lightning callback (the first optimiser step is
step 1), the same background-thread cost (``step()`` is a deque append), per-epoch energy with
``run.epoch()``, and at the end the totals, the paper's metrics, the summary and the artifacts. Metrics go
to the active MLflow run (or ``run_id`` at ``tracking_uri``), and to ``log_metrics(metrics, step)`` if given;
with neither, the artifacts go to ``output_dir``.

    with metered_training(idle_seconds=5) as run:
        for epoch in range(3):
            with run.epoch():
                for x, y in loader:
                    ...; optimiser.step()
                    run.step(samples=len(x))
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from green_mlops import names
from green_mlops.meter import EnergyResult, PowerSource, Settings
from green_mlops.run.core import MeterConfig, MeteredRun
from green_mlops.run.figures import model_params, training_figures
from green_mlops.run.sinks import FunctionLogger, MlflowRun, Sinks
from green_mlops.run.sources import process_sources


class LoopRun:
    """The handle of a metered loop: :meth:`step` per optimiser step, :meth:`epoch` around an epoch."""

    def __init__(self, run: MeteredRun) -> None:
        self.run = run
        self.global_step = 0
        self.samples = 0
        self.accuracy: float | None = None
        self.model: dict[str, Any] | None = None
        self._train_J = 0.0

    @property
    def summary(self) -> dict[str, Any]:
        return self.run.summary

    def step(self, step: int | None = None, *, samples: int = 0) -> None:
        """An optimiser step ended now: ``step`` (default: the previous one + 1, the first is 1)."""
        self.global_step = self.global_step + 1 if step is None else int(step)
        self.samples += samples
        self.run.step(self.global_step)

    @contextlib.contextmanager
    def epoch(self) -> Iterator[None]:
        """Meter one training epoch: ``energy/train_epoch_J`` at its last step."""
        self.run.epoch_start("train")
        try:
            yield
        finally:
            self._train_J += self.run.epoch_end("train", self.global_step)

    def describe_model(self, model: Any, example_input: Any = None) -> None:
        """Log the model's characteristics (params, MACs, size) as ``green_mlops.*`` params."""
        self.model = model_params(model, example_input)
        if self.model is not None:
            self.run.summary["model"] = self.model
            self.run.log_params({**self.model, **self.run.config.carbon_params()})

    def _finish(self, status: str, error: BaseException | None) -> None:
        def figures(result: EnergyResult, total: float) -> dict[str, float | None]:
            return training_figures(result, total, train_J=self._train_J or total, samples=self.samples,
                                    accuracy=self.accuracy, model=self.model, utilisation=self.run.utilisation())
        self.run.finish(status, step=self.global_step, error=error, figures=figures)


def _sinks(run_id: str | None, tracking_uri: str | None, log_metrics: Callable[[dict[str, float], int], None] | None,
           log_params: Callable[[dict[str, Any]], None] | None) -> Sinks:
    import mlflow

    runs = []
    if run_id is None and mlflow.active_run() is not None:
        run_id = mlflow.active_run().info.run_id
    if run_id is not None:
        uri = tracking_uri or mlflow.get_tracking_uri()
        runs.append(MlflowRun(mlflow.MlflowClient(uri), run_id, uri))
    others = [FunctionLogger(log_metrics, log_params)] if log_metrics is not None else []
    return Sinks(runs, others, files=True)


@contextlib.contextmanager
def metered_training(interval: float = 0.1, idle_seconds: float = 0.0, log_every_n_steps: int = 1, *,
                     country: str | None = None, carbon_g_per_kwh: float | None = None, pue: float = 1.0,
                     run_id: str | None = None, tracking_uri: str | None = None,
                     log_metrics: Callable[[dict[str, float], int], None] | None = None,
                     log_params: Callable[[dict[str, Any]], None] | None = None,
                     output_dir: str | Path = names.ARTIFACT_DIR, name: str = "fit",
                     settings: Settings | None = None, sources: list[PowerSource] | None = None,
                     print_summary: bool = True) -> Iterator[LoopRun]:
    """Meter a hand-written training loop; arguments as :class:`green_mlops.lightning.EnergyCallback`'s.

    ``name`` names the end-of-run metrics (``energy/fit_J`` by default, as under Lightning). A loop that
    raises ends the run as ``failed`` with the energy up to then, and the exception goes on to the caller.
    """
    config = MeterConfig(interval, idle_seconds, log_every_n_steps, country, carbon_g_per_kwh, pue, settings,
                             print_summary)
    found = list(sources) if sources is not None else process_sources(settings)
    sinks = _sinks(run_id, tracking_uri, log_metrics, log_params)
    handle = LoopRun(MeteredRun(name, config, sinks, found, fallback_dir=Path(output_dir)))
    try:
        yield handle
    except BaseException as exc:
        handle._finish("failed", exc)
        raise
    handle._finish("success", None)
