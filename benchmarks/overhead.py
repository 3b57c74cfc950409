"""What the EnergyCallback costs a training run, against Lightning's own MLflow logging.

ResNet18 (torchvision, 10 classes) on CIFAR-shaped random batches of 128, on one GPU. Three
set-ups, interleaved over several rounds so drifts in clocks and temperature hit them alike:
  bare      - no logger, no callback
  energy    - EnergyCallback logging every step to MLflow (MLFlowLogger, SQLite store)
  lightning - no callback; the module self.log()s five metrics every step to MLFlowLogger
Prints steps/s per set-up (median over rounds) and the ratio to bare.

    PYTHONPATH=. python3 benchmarks/overhead.py [--steps 400] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from pytorch_lightning.loggers import MLFlowLogger
from torch.utils.data import DataLoader, Dataset

from green_mlops.lightning import EnergyCallback

OUT = Path(os.environ.get("OUT", "bench_out"))


class RandomCifar(Dataset):
    """CIFAR-shaped random images from a pool generated once: the data pipeline costs nothing measurable.

    ``length`` is large so that a run is one epoch: epoch boundaries would time other things.
    """

    def __init__(self, pool: int, length: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(pool, 3, 32, 32, generator=g)
        self.y = torch.randint(0, 10, (pool,), generator=g)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i):
        return self.x[i % len(self.x)], self.y[i % len(self.x)]


class ResNet(pl.LightningModule):
    def __init__(self, log_five: bool) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=10)
        self.log_five = log_five

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if self.log_five:
            acc = (logits.argmax(1) == y).float().mean()
            for name, value in (("loss", loss), ("acc", acc), ("lr", 0.001), ("logit_mean", logits.mean()),
                                ("logit_std", logits.std())):
                self.log(f"train/{name}", value)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.001, weight_decay=5e-4)


class Timer(pl.Callback):
    """Steps per second over the optimiser steps after warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.n = warmup, 0.0, 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup:
            torch.cuda.synchronize()
            self.t0 = time.perf_counter()
        elif trainer.global_step > self.warmup:
            self.n += 1

    def on_train_end(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.t1 = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.n / (self.t1 - self.t0)


def run(kind: str, steps: int, warmup: int, store: str, server: str | None = None) -> tuple[float, dict]:
    timer = Timer(warmup)
    callbacks: list[pl.Callback] = [timer]
    logger = False
    cb = None
    if kind in ("energy", "lightning"):
        logger = MLFlowLogger(experiment_name=f"overhead-{kind}", tracking_uri=store)
    if kind == "energy-http":
        logger = MLFlowLogger(experiment_name=f"overhead-{kind}", tracking_uri=server)
    if kind.startswith("energy"):
        cb = EnergyCallback()
        callbacks.append(cb)
    trainer = pl.Trainer(accelerator="gpu", devices=1, max_steps=steps + warmup + 1, logger=logger,
                         callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1, num_sanity_val_steps=0)
    data = DataLoader(RandomCifar(128 * 64, 128 * (steps + warmup + 10)), batch_size=128, shuffle=True,
                      num_workers=4, pin_memory=True, persistent_workers=True)
    import pynvml

    pynvml.nvmlInit()
    gpu = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    counter0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu)
    trainer.fit(ResNet(log_five=kind == "lightning"), data)
    counter_J = (pynvml.nvmlDeviceGetTotalEnergyConsumption(gpu) - counter0) / 1000
    extra = {}
    if cb is not None:
        gpu_J = cb.summary["local"]["domains"]["gpu"]["energy_J"]
        last_step = cb.steps[-1][2]["energy/gpu_J"] if cb.steps else float("nan")
        extra = {"fit_J": round(cb.summary["energy_J"], 1), "gpu_fit_J": round(gpu_J, 1),
                 "gpu_counter_around_fit_J": round(counter_J, 1), "gpu_at_last_step_J": round(last_step, 1),
                 "steps_logged": len(cb.steps)}
    return timer.rate, extra


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinds", default="bare,energy,lightning",
                   help="comma-separated set-ups; also energy-nolog (callback, no logger: meter cost alone) "
                        "and energy-http (MLflow through a tracking server, --server)")
    p.add_argument("--server", default=None, help="tracking server URI for energy-http")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    torch.backends.cudnn.benchmark = True
    rates: dict[str, list[float]] = {k: [] for k in args.kinds.split(",")}
    details = []
    for r in range(args.rounds):
        for kind in rates:
            rate, extra = run(kind, args.steps, args.warmup, store, args.server)
            rates[kind].append(rate)
            details.append({"round": r, "kind": kind, "steps_per_s": rate, **extra})
            print(f"round {r} {kind:9s} {rate:7.1f} steps/s {extra}", flush=True)
    (OUT / "overhead.json").write_text(json.dumps({"device": torch.cuda.get_device_name(), "details": details,
                                                   "args": vars(args)}, indent=1))
    base = statistics.median(rates["bare"])
    print(f"\n{'set-up':10s} {'steps/s (median)':>17s} {'ratio to bare':>14s}   all rounds")
    for kind, vals in rates.items():
        med = statistics.median(vals)
        print(f"{kind:10s} {med:17.1f} {med / base:14.3f}   {', '.join(f'{v:.1f}' for v in vals)}")


if __name__ == "__main__":
    main()
