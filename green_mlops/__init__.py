"""green_mlops: measure, log and optimise the energy of ML training and inference.

Public API: :class:`EnergyMeter` and the result and settings types it uses.
"""
from green_mlops.meter import (
    EnergyMeter,
    EnergyResult,
    Finding,
    PowerSource,
    Settings,
    SettingsError,
    SourceEnergy,
    SourceInfo,
    Window,
    discover,
)

__version__ = "0.1.0"

__all__ = [
    "EnergyMeter", "EnergyResult", "Finding", "PowerSource", "Settings", "SettingsError",
    "SourceEnergy", "SourceInfo", "Window", "__version__", "discover",
]
