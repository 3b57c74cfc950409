"""green_mlops: measure, log and optimise the energy of ML training and inference.

Public API: :class:`EnergyMeter` and the result and settings types it uses. They load on first
use, so that ``import green_mlops`` stays cheap where the meter is not needed: MLflow imports this
package's run-context plugin in every process that imports MLflow, the metric delivery process too.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from green_mlops.extras import MissingExtra
    from green_mlops.integrations.loop import metered_training
    from green_mlops.meter import (
        EnergyMeter,
        EnergyResult,
        Finding,
        PowerSource,
        Settings,
        SettingsError,
        SettingsWarning,
        SourceEnergy,
        SourceInfo,
        Window,
        discover,
    )
    from green_mlops.prometheus import PrometheusExporter

__version__ = "0.1.0"

__all__ = [
    "EnergyMeter", "EnergyResult", "Finding", "MissingExtra", "PowerSource", "PrometheusExporter", "Settings",
    "SettingsError", "SettingsWarning", "SourceEnergy", "SourceInfo", "Window", "__version__", "discover",
    "metered_training",
]
_HOME = {"MissingExtra": "green_mlops.extras", "PrometheusExporter": "green_mlops.prometheus",
         "metered_training": "green_mlops.integrations.loop"}
_FROM_METER = frozenset(__all__) - {"__version__", *_HOME}


def __getattr__(name: str) -> Any:
    if name in _FROM_METER or name in _HOME:
        value = getattr(importlib.import_module(_HOME.get(name, "green_mlops.meter")), name)
        globals()[name] = value  # later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module 'green_mlops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
