"""Training with the paper's set-up: the Lightning module and config (``train``), data sets (``data``), the zoo.

``green_mlops.training.train_and_measure(TrainConfig(arch="lenet"))`` works as before; names load on first
use, so ``green_mlops.training.data`` does not import Lightning.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "ImageClassifier": "green_mlops.training.train", "TrainConfig": "green_mlops.training.train",
    "TrainOutcome": "green_mlops.training.train", "train_and_measure": "green_mlops.training.train",
    "build_model": "green_mlops.training.train", "check_arch": "green_mlops.training.train",
    "arch_name": "green_mlops.training.train", "load_data": "green_mlops.training.data",
    "DataBundle": "green_mlops.training.data", "DATASETS": "green_mlops.training.data",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'green_mlops.training' has no attribute {name!r}")
