"""Train one image classifier with the paper's set-up and measure the energy of training and inference.

``train_and_measure(TrainConfig(arch="resnet18"))`` fits a zoo model with the ``EnergyCallback`` (the
training energy), then runs it over the dataset's inference set in a second metered run (inference energy
per sample), and returns a :class:`TrainOutcome`. Defaults follow the paper's Table 2: batch 128, SGD with
lr 0.001 and weight decay 5e-4, cross-entropy, a fixed seed. Bad settings raise before anything loads.
Also the ``green-mlops train`` command (:func:`add_arguments`, :func:`run`).
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import Logger, MLFlowLogger
from torch.utils.data import DataLoader

from green_mlops import names
from green_mlops.argtypes import check_number, check_seconds, check_whole
from green_mlops.integrations.lightning import EnergyCallback
from green_mlops.meter import J_PER_WH, validate_interval
from green_mlops.training.data import DATASETS, INPUT_SHAPE, DataBundle, load_data

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


class ImageClassifier(pl.LightningModule):
    """Any ``nn.Module`` classifier trained with SGD and cross-entropy, logging loss and accuracy per epoch.

    Metrics are logged ``on_epoch`` only: logging every step to MLflow costs throughput (and energy).
    ``example_input_array`` is one zero image so the EnergyCallback can count MACs.
    """

    def __init__(self, model: torch.nn.Module, *, lr: float = 0.001, weight_decay: float = 5e-4,
                 momentum: float = 0.0, input_shape: tuple[int, ...] = INPUT_SHAPE) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        self.model = model
        self.lr, self.weight_decay, self.momentum = float(lr), float(weight_decay), float(momentum)
        self.example_input_array = torch.zeros(1, *input_shape)
        self.samples_seen = 0
        self.samples_predicted = 0
        self.validated_at_step: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.samples_seen += int(x.shape[0])
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: Any, prefix: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, y), on_step=False, on_epoch=True)
        self.log(f"{prefix}_acc", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.validated_at_step = self.trainer.global_step

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.samples_predicted += int(x.shape[0])
        return self(x).argmax(1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


def check_arch(arch: Any) -> None:
    """Raise ValueError unless ``arch`` names a model the zoo can build (or is a callable(num_classes))."""
    if arch is None or (isinstance(arch, str) and not arch.strip()):
        raise ValueError("an architecture is required: --arch NAME (e.g. lenet, resnet18, torchvision:resnet18)")
    try:
        from green_mlops.training.zoo import check_model_spec
    except ModuleNotFoundError as exc:
        if exc.name != "green_mlops.training.zoo":
            raise
        if callable(arch):
            return
        raise ValueError(f"architecture {arch!r} needs green_mlops.training.zoo, which is not installed; "
                         "pass a callable(num_classes) returning an nn.Module instead") from None
    try:
        check_model_spec(arch)
    except (TypeError, LookupError) as exc:
        raise ValueError(str(exc)) from exc


def build_model(arch: Any, num_classes: int) -> torch.nn.Module:
    """The network for ``arch``, through the zoo (registry name, ``torchvision:<name>``, ``pkg.mod:fn``, callable)."""
    try:
        from green_mlops.training.zoo import build_model as zoo_build
    except ModuleNotFoundError as exc:
        if exc.name != "green_mlops.training.zoo" or not callable(arch):
            raise
        return arch(num_classes)
    return zoo_build(arch, num_classes=num_classes)


def arch_name(arch: Any) -> str:
    """A short printable name for an architecture spec (a callable's qualified name)."""
    if isinstance(arch, str):
        return arch
    return getattr(arch, "__qualname__", None) or getattr(arch, "__name__", None) or type(arch).__name__


@dataclass
class TrainConfig:
    """One training configuration. Defaults are the paper's (Table 2) on the bundled digits data.

    ``max_steps`` caps optimiser steps (a short profile: energy is linear in steps); ``interval`` and
    ``idle_seconds`` go to the EnergyCallback; ``data_options`` to :func:`green_mlops.training.data.load_data`
    (e.g. ``{"train_samples": 50_000}`` for synthetic data); ``inference_max_batches`` limits the
    inference measurement; ``output_dir`` (default: the current folder) is Lightning's root folder;
    runs without MLflow get the energy trace and summary in its ``green_mlops_energy/``.
    """

    arch: Any
    batch_size: int = 128
    lr: float = 0.001
    weight_decay: float = 5e-4
    momentum: float = 0.0
    epochs: int = 1
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    seed: int = 0
    max_steps: int | None = None
    num_workers: int = 0
    accelerator: str = "auto"
    interval: float = 0.1
    idle_seconds: float = 0.0
    log_every_n_steps: int = 1
    inference_batch_size: int | None = None
    inference_max_batches: int | None = None
    data_options: dict[str, Any] = field(default_factory=dict)
    output_dir: str | None = None
    progress_bar: bool = False

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the fix for any bad setting; called before any data or model is loaded."""
        check_whole("batch size", self.batch_size, 1)
        check_whole("epochs", self.epochs, 1)
        check_number("learning rate", self.lr, positive=True, example="0.001")
        check_number("weight decay", self.weight_decay, positive=False, example="5e-4")
        check_number("momentum", self.momentum, positive=False, example="0.9")
        check_whole("max steps", self.max_steps, 1, allow_none=True)
        check_whole("num_workers", self.num_workers, 0)
        check_whole("seed", self.seed, 0)
        check_whole("log_every_n_steps", self.log_every_n_steps, 1)
        check_whole("inference batch size", self.inference_batch_size, 1, allow_none=True)
        check_whole("inference max batches", self.inference_max_batches, 1, allow_none=True)
        validate_interval(self.interval)
        check_seconds("idle seconds", self.idle_seconds, example="5")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"unknown accelerator {self.accelerator!r}; choose one of {', '.join(ACCELERATORS)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        allowed = set(inspect.signature(load_data).parameters) - {"name", "data_dir", "download", "seed"}
        unknown = sorted(set(self.data_options) - allowed)
        if unknown:
            raise ValueError(f"unknown data option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        if self.dataset == "cifar10" and self.data_dir is None:
            raise ValueError("cifar10 needs a data folder: pass --data-dir DIR (data_dir=) where cifar-10-batches-py "
                             "is, or where to put it with --download (download=True)")
        check_arch(self.arch)
        return self

    def as_params(self) -> dict[str, Any]:
        """The settings that define the run, for MLflow params (arch by name; unset options left out)."""
        params = {k: v for k, v in asdict(self).items()
                  if v is not None and k not in ("data_options", "output_dir", "progress_bar", "num_workers")}
        params["arch"] = arch_name(self.arch)
        params.update({f"data.{k}": v for k, v in self.data_options.items()})
        return params


@dataclass
class TrainOutcome:
    """What one configuration cost and achieved. Energies in joules, with their provenance in ``methods``.

    ``train_energy_J`` is the whole fit (training and its validation epochs: MLflow's ``energy/fit_J``);
    ``train_energy_per_sample_J`` counts the training loop only. ``status`` is ``completed`` or ``stopped`` (a callback, e.g. an energy budget or early stopping, ended
    fit before its planned steps). Inference is skipped (its fields None) when stopped, unless asked for.
    ``summaries`` holds the EnergyCallback's summary of each metered run: ``fit``, ``validate`` (only when
    fit did not end on a validation, e.g. ``max_steps`` mid-epoch) and ``inference``.
    """

    arch: str
    dataset: str
    data_provenance: str
    status: str
    val_accuracy: float | None
    train_energy_J: float
    train_net_energy_J: float | None
    train_energy_per_sample_J: float | None
    train_time_s: float | None
    steps: int
    samples_seen: int
    inference_energy_J: float | None
    inference_energy_per_sample_J: float | None
    inference_samples: int
    inference_time_s: float | None
    model: dict[str, Any]
    methods: dict[str, str]
    run_id: str | None
    summaries: dict[str, dict[str, Any]]

    @property
    def train_energy_Wh(self) -> float:
        return self.train_energy_J / J_PER_WH

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy of every field."""
        return {**asdict(self), "train_energy_Wh": self.train_energy_Wh}


def _methods(summary: dict[str, Any]) -> dict[str, str]:
    """Per domain, how its energy was obtained, e.g. ``{"gpu": "measured:nvml-energy-counter"}``."""
    domains = summary.get("local", {}).get("domains", {})
    return {d: ", ".join(v.get("methods", [])) for d, v in domains.items()}


def _loggers(logger: Any) -> Any:
    if logger is None or logger is False:
        return False
    return logger


def _log_params(trainer: pl.Trainer, params: dict[str, Any]) -> None:
    """Log the run's settings; on an MLflow run that already has some (a sweep's nested run), keep those."""
    for lg in trainer.loggers:
        todo = params
        if isinstance(lg, MLFlowLogger):
            have = lg.experiment.get_run(lg.run_id).data.params
            todo = {k: v for k, v in params.items() if k not in have}
        if todo:
            lg.log_hyperparams(todo)


def _loader(dataset: Any, batch_size: int, *, shuffle: bool, config: TrainConfig, pin: bool) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=config.num_workers,
                      pin_memory=pin, persistent_workers=config.num_workers > 0, generator=generator)


def _uses_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def train_and_measure(config: TrainConfig, *, logger: Logger | Iterable[Logger] | bool | None = None,
                      extra_callbacks: Iterable[pl.Callback] = (), data: DataBundle | None = None,
                      inference: bool | None = None) -> TrainOutcome:
    """Fit ``config`` with the EnergyCallback, then measure inference over the dataset's inference set.

    Args:
        logger: a Lightning logger (e.g. ``MLFlowLogger(run_id=...)`` bound to a sweep's nested run),
            several, or None/False for none. Energy per step, per epoch and per run goes to each.
        extra_callbacks: added to the Trainer (e.g. an energy budget that stops fit early).
        data: a bundle already loaded (saves reloading across many runs); else ``config.dataset``.
        inference: measure inference; default: yes, unless fit was stopped early.
    """
    config.validate()
    extra = list(extra_callbacks)
    for cb in extra:
        if not isinstance(cb, pl.Callback):
            raise TypeError(f"extra_callbacks must be Lightning callbacks; got {type(cb).__name__}")
    if data is not None and data.name != config.dataset:
        raise ValueError(f"data is the {data.name!r} dataset but config.dataset is {config.dataset!r}; "
                         "make them agree")
    bundle = data if data is not None else load_data(config.dataset, data_dir=config.data_dir,
                                                     download=config.download, seed=config.seed,
                                                     **config.data_options)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module = ImageClassifier(build_model(config.arch, bundle.num_classes), lr=config.lr,
                             weight_decay=config.weight_decay, momentum=config.momentum, input_shape=bundle.input_shape)
    pin = _uses_cuda(config.accelerator)
    eval_bs = config.inference_batch_size or config.batch_size
    train_loader = _loader(bundle.train, config.batch_size, shuffle=True, config=config, pin=pin)
    val_loader = _loader(bundle.val, eval_bs, shuffle=False, config=config, pin=pin)
    energy = EnergyCallback(interval=config.interval, idle_seconds=config.idle_seconds,
                            log_every_n_steps=config.log_every_n_steps, accuracy_key="val_acc",
                            output_dir=Path(config.output_dir or ".") / "green_mlops_energy")
    trainer = pl.Trainer(max_epochs=config.epochs, max_steps=config.max_steps or -1, accelerator=config.accelerator,
                         devices=1, logger=_loggers(logger), callbacks=[energy, *extra],
                         enable_progress_bar=config.progress_bar, enable_checkpointing=False,
                         enable_model_summary=False, num_sanity_val_steps=0,
                         log_every_n_steps=max(1, min(50, len(train_loader))),
                         default_root_dir=config.output_dir,
                         limit_predict_batches=config.inference_max_batches)
    _log_params(trainer, {**config.as_params(), "data_provenance": bundle.provenance,
                          "train_samples": len(bundle.train), "val_samples": len(bundle.val),
                          "inference_samples": len(bundle.inference)})

    trainer.fit(module, train_loader, val_loader)
    summaries = {"fit": copy.deepcopy(energy.summary)}
    planned = config.epochs * len(train_loader)
    planned = min(planned, config.max_steps) if config.max_steps else planned
    status = "completed" if trainer.global_step >= planned else "stopped"
    if module.validated_at_step != trainer.global_step:
        trainer.validate(module, val_loader, verbose=False)
        summaries["validate"] = copy.deepcopy(energy.summary)
    acc = trainer.callback_metrics.get("val_acc")
    accuracy = float(acc) if acc is not None else None

    inf_J = inf_per_sample = inf_time = None
    if inference if inference is not None else status == "completed":
        inference_loader = _loader(bundle.inference, eval_bs, shuffle=False, config=config, pin=pin)
        trainer.predict(module, inference_loader, return_predictions=False)
        summaries["inference"] = copy.deepcopy(energy.summary)
        inf = summaries["inference"]
        inf_J, inf_time = inf.get("energy_J"), inf.get("duration_s")
        inf_per_sample = inf.get("metrics", {}).get(names.metric(names.ENERGY_PER_SAMPLE_INFERENCE))

    fit = summaries["fit"]
    run_id = next((lg.run_id for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)
    return TrainOutcome(
        arch=arch_name(config.arch), dataset=bundle.name, data_provenance=bundle.provenance, status=status,
        val_accuracy=accuracy, train_energy_J=float(fit.get("energy_J", 0.0)),
        train_net_energy_J=fit.get("local", {}).get("net_J"),
        train_energy_per_sample_J=fit.get("metrics", {}).get(names.metric(names.ENERGY_PER_SAMPLE_TRAIN)),
        train_time_s=fit.get("duration_s"), steps=int(trainer.global_step), samples_seen=module.samples_seen,
        inference_energy_J=inf_J, inference_energy_per_sample_J=inf_per_sample,
        inference_samples=module.samples_predicted, inference_time_s=inf_time, model=dict(fit.get("model", {})),
        methods=_methods(fit), run_id=run_id, summaries=summaries)
