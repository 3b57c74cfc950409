"""A real trial runner for search tests: a small MLP trained on digits with the EnergyCallback.

The search itself does not care what is trained; this keeps its tests fast while everything is real:
Lightning training, the callback's energy, MLflow runs and Optuna's study. Architectures are
``mlpN`` (N hidden units) and ``crash`` (a training step that raises, to test failed trials).
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger

from green_mlops.lightning import EnergyCallback
from green_mlops.search import TrialContext, TrialResult
from tests.lightning_digits import DigitsMLP, digits_loaders


class SizedMLP(DigitsMLP):
    def __init__(self, hidden: int, lr: float, fail_at_step: int | None = None) -> None:
        super().__init__(fail_at_step=fail_at_step)
        self.net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
        self.lr = lr

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def check_arch(name: str) -> None:
    if name != "crash" and not (name.startswith("mlp") and name[3:].isdigit()):
        raise ValueError(f"unknown architecture {name!r}; choose mlpN or crash")


def run_trial(ctx: TrialContext, epochs: int = 1) -> TrialResult:
    p = ctx.params
    arch = p["arch"]
    model = SizedMLP(16, p["lr"], fail_at_step=3) if arch == "crash" else SizedMLP(int(arch[3:]), p["lr"])
    train, val = digits_loaders(batch_size=p["batch_size"])
    cb = EnergyCallback(interval=0.05)
    logger = MLFlowLogger(tracking_uri=ctx.tracking_uri, run_id=ctx.run_id)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger,
                         callbacks=[cb, *ctx.callbacks], enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, log_every_n_steps=5)
    trainer.fit(model, train, val)
    fit = dict(cb.summary)
    acc = float(trainer.callback_metrics["val_acc"])
    per_sample = None
    if not ctx.over_budget():
        trainer.test(model, val, verbose=False)
        per_sample = cb.summary["metrics"]["energy_per_sample_inference_J"]
    return TrialResult(accuracy=acc, training_J=fit["energy_J"], inference_J_per_sample=per_sample,
                       inference_samples=len(val.dataset), duration_s=fit.get("duration_s"),
                       steps=trainer.global_step)


class _Broken(torch.nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 32 * 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom: this model's forward always fails")


def broken_model(num_classes: int = 10) -> torch.nn.Module:
    """A zoo factory (``tests.search_runner:broken_model``) whose every trial fails in its first step."""
    return _Broken(num_classes)
