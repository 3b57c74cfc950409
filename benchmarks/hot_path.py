"""The EnergyCallback's cost per training step on the training thread, in microseconds.

Inside a real fit (meter and attribution threads running), one training step calls the callback's
per-step hook 100,000 times on a real batch and times it. Runs on any machine (CPU is fine).

    PYTHONPATH=. python3 benchmarks/hot_path.py
"""
from __future__ import annotations

import statistics
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from green_mlops.lightning import EnergyCallback

N = 100_000


class Probe(pl.LightningModule):
    def __init__(self, cb: EnergyCallback) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(32, 2)
        self.cb = cb
        self.per_call_us: list[float] = []

    def training_step(self, batch, batch_idx):
        if batch_idx == 3:
            for _ in range(5):
                t0 = time.perf_counter()
                for i in range(N):
                    self.cb.on_train_batch_end(self.trainer, self, None, batch, i)
                self.per_call_us.append((time.perf_counter() - t0) / N * 1e6)
        x, y = batch
        return torch.nn.functional.cross_entropy(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    cb = EnergyCallback()
    model = Probe(cb)
    data = DataLoader(TensorDataset(torch.randn(1280, 32), torch.randint(0, 2, (1280,))), batch_size=128)
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, callbacks=[cb], enable_progress_bar=False,
               enable_checkpointing=False, enable_model_summary=False).fit(model, data)
    print(f"EnergyCallback.on_train_batch_end: median {statistics.median(model.per_call_us):.2f} µs per step "
          f"(5 repeats of {N:,} calls: {', '.join(f'{v:.2f}' for v in model.per_call_us)})")


if __name__ == "__main__":
    main()
