"""A tiny real training set-up for callback tests: an MLP on scikit-learn's bundled digits."""
from __future__ import annotations

import importlib

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


def digits_loaders(batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    train = TensorDataset(x[:1400], y[:1400])
    val = TensorDataset(x[1400:], y[1400:])
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=256)


class DigitsSteps:
    """The MLP's layers and steps, mixed into a LightningModule of either package."""

    def __init__(self, fail_at_step: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        self.fail_at_step = fail_at_step
        self.example_input_array = torch.zeros(1, 64)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.fail_at_step is not None and self.global_step >= self.fail_at_step:
            raise RuntimeError("boom: a bug in the user's training step")
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", torch.nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_acc", (self(x).argmax(1) == y).float().mean())

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).argmax(1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=5e-4)


class DigitsMLP(DigitsSteps, pl.LightningModule):
    """The digits MLP as a ``pytorch_lightning`` module."""


def digits_mlp(package: str) -> type:
    """The digits MLP as a LightningModule of ``package`` (``lightning.pytorch`` or ``pytorch_lightning``)."""
    return type("DigitsMLP", (DigitsSteps, importlib.import_module(package).LightningModule), {})
