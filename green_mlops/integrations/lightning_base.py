"""Lightning under both package names: ``lightning.pytorch`` and ``pytorch_lightning``, either or both installed.

Lightning checks callbacks with ``isinstance`` against its own ``Callback`` class, so a callback that
works with both Trainers derives from the ``Callback`` of every installed package (:data:`CALLBACK_BASES`).
Loggers are recognised by what they are, not by one package's class.
"""
from __future__ import annotations

import importlib
from typing import Any

from green_mlops.run.sinks import MlflowRun

PACKAGES = ("lightning.pytorch", "pytorch_lightning")


def _bases() -> tuple[type, ...]:
    found = []
    for name in PACKAGES:
        try:
            found.append(importlib.import_module(name).Callback)
        except ImportError:
            continue
    if not found:
        raise ImportError("green_mlops' Lightning callbacks need Lightning: pip install lightning "
                          "(or pytorch-lightning)")
    return tuple(found)


CALLBACK_BASES: tuple[type, ...] = _bases()


def is_mlflow_logger(logger: Any) -> bool:
    """True for Lightning's ``MLFlowLogger`` of either package, or a subclass of one, or a look-alike."""
    for cls in type(logger).__mro__:
        if cls.__name__ == "MLFlowLogger" and cls.__module__.startswith(("lightning.", "pytorch_lightning.")):
            return True
    return hasattr(logger, "run_id") and type(getattr(logger, "_mlflow_client", None)).__name__ == "MlflowClient"


def mlflow_run(logger: Any) -> MlflowRun | None:
    """The MLflow run a logger writes to (its client, run id and tracking URI), or None for other loggers."""
    if not is_mlflow_logger(logger):
        return None
    client = logger.experiment  # creates the run if it does not exist yet
    uri = getattr(logger, "_tracking_uri", None) or getattr(client, "tracking_uri", None)
    if not uri:
        import mlflow

        uri = mlflow.get_tracking_uri()
    return MlflowRun(client, logger.run_id, str(uri))
