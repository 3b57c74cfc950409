"""``EnergyCallback`` for Hugging Face ``transformers.Trainer``: the same energy metrics as under Lightning.

Per optimiser step (``state.global_step``; with gradient accumulation one step is one optimiser step):
``power/…`` and ``energy/…``; per epoch ``energy/train_epoch_J``; at the end ``energy/train_J``,
``green_mlops/energy_per_sample_train_J`` and the paper's metrics, the summary and the artifacts. They go to
the MLflow run that is active when training begins (the one transformers' ``MLflowCallback`` started, or
the user's), else to a run of its own when ``tracking_uri`` is given, else through ``Trainer.log`` to
whatever ``report_to`` names. Under ``accelerate``/``torchrun`` each process meters its own GPU, the host is
metered once per node, and process zero logs the sums.

``TrainerCallback`` has no hook for an exception, so the callback wraps its trainer's ``train`` when the trainer
is made (``on_init_end``): an exception escaping ``train()`` ends the run as ``failed`` with the energy up to
then (summary, metrics, artifacts; the MLflow run it started, or transformers' ``MLflowCallback`` started,
ends ``FAILED``, as under Lightning) and goes on to the caller unchanged. A callback added later with
``trainer.add_callback`` is covered from the next ``train()``; for the call already running, an unfinished run
is ended as failed at the next ``train()`` or when the interpreter exits.

With ``TrainingArguments(auto_find_batch_size=True)`` transformers runs its training loop under accelerate's
``find_executable_batch_size``: an out-of-memory error shrinks the batch size (×0.9) and starts the loop again,
``on_train_begin`` included, in the same ``train()`` call. That stays one run (one MLflow run, ``FINISHED`` when a
retry succeeds). The energy of the attempts that ran out of memory was spent, so it stays in every total, and the
samples they trained on before it count too: ``energy_per_sample_train_J`` divides all training epochs' energy,
the interrupted ones' up to the retry included, by all samples trained on. A warning says so once; the param
``green_mlops.batch_sizes_tried`` lists the batch sizes (``state.train_batch_size``) and the summary's ``attempts``
gives each one's batch size, optimiser steps, samples, energy (this process's), first logged step and error.
transformers restarts ``global_step`` at 0 on a retry; the per-step metrics go on from the last step logged (a
retry's step ``s`` is logged as ``s`` plus the steps of the attempts before it), so ``energy/…`` stays cumulative
over one rising step axis, nothing logged twice at a step (transformers' own metrics, ``loss``, restart at 1).

    trainer = Trainer(model, args, train_dataset=..., callbacks=[EnergyCallback(idle_seconds=5)])
"""
from __future__ import annotations

import atexit
import functools
import inspect
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from green_mlops import names
from green_mlops.extras import require
from green_mlops.meter import EnergyResult, PowerSource, Settings
from green_mlops.run.core import MeterConfig, MeteredRun, NullRun
from green_mlops.run.figures import batch_size, find_accuracy, model_params, training_figures
from green_mlops.run.sinks import FunctionLogger, MlflowRun, Sinks
from green_mlops.run.sources import process_sources

log = logging.getLogger(__name__)

STAGE = "train"
_WRAPPED_BY = "_green_mlops_callback"  # marks a trainer's ``train`` as wrapped, naming the callback


def _find_trainer() -> Any:
    """The ``transformers.Trainer`` whose loop is calling us (callbacks are not handed the trainer)."""
    from transformers import Trainer

    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, Trainer):
            return owner
        frame = frame.f_back
    return None


def _trainer_logger(trainer: Any) -> FunctionLogger:
    """Metrics into ``Trainer.log`` at their own step: ``on_log`` handlers read ``state.global_step``."""
    def log_metrics(metrics: dict[str, float], step: int) -> None:
        now = trainer.state.global_step
        trainer.state.global_step = step
        try:
            trainer.log(dict(metrics))
        finally:
            trainer.state.global_step = now
    return FunctionLogger(log_metrics)


def _reducer(args: Any) -> Any:
    if getattr(args, "world_size", 1) <= 1:
        return None
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None

    def reduce(value: Any) -> Any:  # a number or a list of numbers, in one collective call
        device = args.device if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor(value if isinstance(value, list) else [value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        out = t.tolist()
        return out if isinstance(value, list) else out[0]
    return reduce


@dataclass
class _Attempt:
    """One pass of transformers' training loop in a ``train()`` call (several when it retried after running out
    of memory); the ``start_`` fields are where it began and stay out of the summary."""

    batch_size: int | None
    first_step: int  # the step number its first optimiser step is logged at
    start_step: int = field(repr=False)  # state.global_step when it began: 0, or a checkpoint's
    start_samples: int = field(repr=False)
    start_time: float = field(repr=False)  # time.monotonic()
    steps: int = 0
    samples: int = 0
    energy_J: float = 0.0
    error: str | None = None

    def close(self, step: int, samples: int, energy_J: float, error: str | None) -> None:
        """It ended at ``step`` with ``samples`` counted so far, having used ``energy_J`` (this process's)."""
        self.steps, self.samples = step - self.start_step, samples - self.start_samples
        self.energy_J, self.error = energy_J, error

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("start_")}


class EnergyCallback(require("transformers").TrainerCallback):  # type: ignore[misc]
    """Meters ``Trainer.train()`` and logs energy per optimiser step, per epoch and at the end.

    Args: as :class:`green_mlops.lightning.EnergyCallback`; plus ``tracking_uri`` / ``experiment``: an
    MLflow store for a run of its own when no MLflow run is active at the start of training.
    """

    def __init__(self, interval: float = 0.1, idle_seconds: float = 0.0, log_every_n_steps: int = 1, *,
                 country: str | None = None, carbon_g_per_kwh: float | None = None, pue: float = 1.0,
                 accuracy_key: str | None = None, output_dir: str | Path | None = None,
                 tracking_uri: str | None = None, experiment: str = "green-mlops",
                 settings: Settings | None = None, sources: list[PowerSource] | None = None,
                 print_summary: bool = True) -> None:
        self.config = MeterConfig(interval, idle_seconds, log_every_n_steps, country, carbon_g_per_kwh, pue, settings,
                             print_summary)
        self.accuracy_key = accuracy_key
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self._given_sources = sources
        self._idle: EnergyResult | None = None
        self._own_run: MlflowRun | None = None
        self.run: MeteredRun | NullRun | None = None
        self.summary: dict[str, Any] = {}
        self._samples = 0  # this process's, counted by the wrapped training_step
        self._train_J = 0.0
        self._args: Any = None
        self._state: Any = None
        self._mlflow_callbacks: list[Any] = []  # transformers' MLflowCallback(s) of the trainer, for a failed end
        self._call: object | None = None  # a token of the wrapped train() call running now
        self._run_call: object | None = None  # the call the current run began in: a new loop in it is a retry
        self._offset = 0  # added to state.global_step: the steps earlier attempts of this train() logged
        self._attempts: list[_Attempt] = []
        self._interrupted_J = 0.0  # training-epoch energy of attempts that ran out of memory, up to the retry
        self._step_error: str | None = None  # the last exception out of training_step, as text

    def _attach(self, trainer: Any) -> bool:
        """Wrap ``trainer.train`` (an exception escaping it ends the run as failed) and ``trainer.training_step``
        (counts the samples of each micro-batch: a partial last batch counts what it holds); True if done before."""
        if trainer is None:
            return False
        if getattr(trainer.train, _WRAPPED_BY, None) is self:
            return True
        train, training_step = trainer.train, trainer.training_step

        @functools.wraps(training_step)
        def counted_step(*args: Any, **kwargs: Any) -> Any:  # (model, inputs, num_items_in_batch)
            try:
                out = training_step(*args, **kwargs)
            except Exception as exc:  # its text only: its traceback holds tensors a retry needs freed
                self._step_error = f"{type(exc).__name__}: {exc}"[:500]
                raise
            self._samples += batch_size(args[1] if len(args) > 1 else kwargs.get("inputs"))
            return out

        @functools.wraps(train)
        def metered_train(*args: Any, **kwargs: Any) -> Any:
            outer, self._call = self._call, object()
            try:
                return train(*args, **kwargs)
            except BaseException as exc:
                self._end("failed", exc)
                raise
            finally:
                self._call = outer
        setattr(metered_train, _WRAPPED_BY, self)
        trainer.train, trainer.training_step = metered_train, counted_step
        return False

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._attach(_find_trainer())

    def _sinks(self, state: Any, trainer: Any) -> Sinks:
        self._own_run = None
        if not state.is_world_process_zero:
            return Sinks()
        import mlflow

        active = mlflow.active_run()
        if active is not None:
            return Sinks([MlflowRun(mlflow.MlflowClient(), active.info.run_id, mlflow.get_tracking_uri())])
        if self.tracking_uri is not None:
            client = mlflow.MlflowClient(self.tracking_uri)
            exp = client.get_experiment_by_name(self.experiment)
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
            self._own_run = MlflowRun(client, client.create_run(exp_id).info.run_id, self.tracking_uri)
            return Sinks([self._own_run])
        if trainer is None:
            log.warning("green_mlops: no MLflow run and no Trainer found; energy goes to the summary and %s only",
                        self.output_dir or names.ARTIFACT_DIR)
            return Sinks(files=True)
        return Sinks(others=[_trainer_logger(trainer)])

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if (getattr(args, "auto_find_batch_size", False) and self.run is not None and not self.run.finished
                and self._run_call is self._call):
            self._retry(args, state)
            return
        self._end("failed", RuntimeError("train() began again before the last one ended"), end_mlflow=False)
        self.summary = {}
        self._train_J = self._interrupted_J = 0.0
        self._samples = self._offset = 0
        self._args, self._state = args, state
        self._run_call, self._attempts = self._call, []
        self._begin_attempt(state)
        trainer = _find_trainer()
        covered = self._attach(trainer)  # False when added after the trainer was made: this call is not wrapped
        self._mlflow_callbacks = _mlflow_callbacks(trainer)
        try:
            sources = (list(self._given_sources) if self._given_sources is not None else
                       process_sources(self.config.settings, world_size=args.world_size,
                                       local_rank=max(args.local_process_index, 0),
                                       gpu_index=getattr(args.device, "index", None)))
            sinks = self._sinks(state, trainer)
            out = self.output_dir or Path(args.output_dir) / names.ARTIFACT_DIR
            self.run = (MeteredRun(STAGE, self.config, sinks, sources, idle=self._idle, fallback_dir=out)
                        if sources else NullRun(sinks))
        except Exception as exc:  # measuring must never stop training
            log.warning("green_mlops: training runs unmetered: %s", exc)
            self.run = NullRun()
            return
        if not covered:  # registered after the run's writers, so it runs before they close at exit
            atexit.register(self._end_at_exit)
        self._idle = self.run.idle
        self.summary = self.run.summary
        stats = model_params(model, None) if model is not None else None
        if stats is not None:
            self.summary["model"] = stats
            self.run.log_params({**stats, **self.config.carbon_params()})

    def _begin_attempt(self, state: Any) -> None:
        step = state.global_step
        self._attempts.append(_Attempt(getattr(state, "train_batch_size", None), self._offset + step + 1, step,
                                       self._samples, time.monotonic()))
        self._step_error = None

    def _retry(self, args: Any, state: Any) -> None:
        """transformers began its loop again in the same ``train()`` (``auto_find_batch_size``, after running out of
        memory): the attempt ends, its energy stays, the run goes on from the last step logged."""
        run, prev, attempt = self.run, self._state, self._attempts[-1]
        self._interrupted_J += run.epoch_end("train", 0, log=False)  # its unfinished epoch, up to now
        attempt.close(prev.global_step, self._samples, run.energy_since(attempt.start_time),
                      self._step_error or "unknown (raised outside training_step)")
        self._offset += prev.global_step - state.global_step
        self._args, self._state = args, state
        self._begin_attempt(state)
        if len(self._attempts) == 2:
            log.warning("green_mlops: train() failed at batch size %s (%s) and transformers' auto_find_batch_size "
                        "retries with %s; this stays one run: the energy spent so far stays in it, the retry's "
                        "steps are logged from step %d, and the batch sizes tried go to the param %s and the "
                        "summary's 'attempts'", attempt.batch_size, attempt.error, self._attempts[-1].batch_size,
                        self._attempts[-1].first_step, names.param(names.BATCH_SIZES_TRIED))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None:
            self.run.step(self._offset + state.global_step)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None:
            self.run.epoch_start("train")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.run is not None:
            self._train_J += self.run.epoch_end("train", self._offset + state.global_step, _reducer(args))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._end("success")

    def _end_at_exit(self) -> None:
        self._end("failed", getattr(sys, "last_value", None) or RuntimeError("the interpreter exited during train()"))

    def _end(self, status: str, error: BaseException | None = None, end_mlflow: bool = True) -> None:
        """Finish the metered run (sums over processes unless it failed) and end the MLflow run it began."""
        run = self.run
        if run is None or run.finished:
            return
        atexit.unregister(self._end_at_exit)
        args, state = self._args, self._state
        reduce = _reducer(args) if error is None else None  # after a failure other processes may be gone
        counts = [float(self._samples), self._interrupted_J]
        samples, interrupted_J = reduce(counts) if reduce is not None else counts
        evals = [h for h in state.log_history if any(k.startswith("eval_") for k in h)]

        def figures(result: EnergyResult, total: float) -> dict[str, float | None]:
            return training_figures(result, total, train_J=self._train_J + interrupted_J or total,
                                    samples=round(samples), model=self.summary.get("model"),
                                    accuracy=find_accuracy(evals[-1] if evals else {}, self.accuracy_key),
                                    utilisation=run.utilisation())

        if len(self._attempts) > 1:  # retried after running out of memory: say so in the run and its summary
            last = self._attempts[-1]
            try:
                last.close(state.global_step, self._samples, run.energy_since(last.start_time),
                           None if error is None else f"{type(error).__name__}: {error}")
                run.summary["attempts"] = [a.as_dict() for a in self._attempts]
                run.log_params({names.BATCH_SIZES_TRIED: ",".join(str(a.batch_size) for a in self._attempts)})
            except Exception as exc:  # the run must still finish
                log.warning("green_mlops: could not record the batch sizes tried: %s", exc)
        run.finish(status, step=self._offset + state.global_step, reduce=reduce, error=error, figures=figures)
        self.summary = run.summary
        mlflow_status = "FINISHED" if error is None else "FAILED"
        try:
            if self._own_run is not None:
                self._own_run.client.set_terminated(self._own_run.run_id, mlflow_status)
            elif error is not None and end_mlflow and state.is_world_process_zero:
                _end_mlflow_callback_run(self._mlflow_callbacks, mlflow_status)
        except Exception as exc:  # the energy is in the summary; ending the run is MLflow's business
            log.warning("green_mlops: could not mark the MLflow run %s: %s", mlflow_status, exc)


def _mlflow_callbacks(trainer: Any) -> list[Any]:
    """transformers' ``MLflowCallback`` (and subclasses) among the trainer's callbacks."""
    try:
        from transformers.integrations import MLflowCallback
    except ImportError:
        return []
    return [cb for cb in getattr(getattr(trainer, "callback_handler", None), "callbacks", [])
            if isinstance(cb, MLflowCallback)]


def _end_mlflow_callback_run(callbacks: list[Any], status: str) -> None:
    """End the run transformers' ``MLflowCallback`` started, as its ``on_train_end`` would (never the user's)."""
    import mlflow

    for cb in callbacks:
        if getattr(cb, "_auto_end_run", False) and mlflow.active_run() is not None:
            mlflow.end_run(status)
            return
