"""Measurement layer: power sources, the sampler, integration and the ``EnergyMeter``.

Imports no ML framework; a new power source is one module here plus a line in ``discovery``.
"""
from green_mlops.meter.discovery import discover
from green_mlops.meter.meter import EnergyMeter, Window
from green_mlops.meter.result import EnergyResult, SourceEnergy
from green_mlops.meter.settings import Settings, SettingsError, SettingsWarning
from green_mlops.meter.source import Discovery, Finding, PowerSource, Reading, SourceError, SourceInfo, Tick

__all__ = [
    "Discovery", "EnergyMeter", "EnergyResult", "Finding", "PowerSource", "Reading", "Settings",
    "SettingsError", "SettingsWarning", "SourceEnergy", "SourceError", "SourceInfo", "Tick", "Window", "discover",
]
