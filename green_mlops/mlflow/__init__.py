"""MLflow integration: a batched, spooling metric writer, hardware tags on every run, and autolog.

Names load lazily: MLflow imports ``green_mlops.mlflow.context`` while it is itself still loading
(the run-context-provider plugin), so this package must not import MLflow at import time.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "autolog": "green_mlops.integrations.autolog",
    "MetricWriter": "green_mlops.mlflow.writer",
    "sync": "green_mlops.mlflow.launch",
    "sync_artifacts": "green_mlops.mlflow.uploads",
    "SyncReport": "green_mlops.mlflow.spool",
    "default_spool_dir": "green_mlops.mlflow.spool",
    "GreenMlopsRunContext": "green_mlops.mlflow.context",
    "hardware_tags": "green_mlops.mlflow.context",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'green_mlops.mlflow' has no attribute {name!r}")
