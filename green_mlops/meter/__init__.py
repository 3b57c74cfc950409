"""Measurement layer: power sources, the sampler, integration and the ``EnergyMeter``.

Imports no ML framework; a new power source is one module here plus a line in ``discovery``.
Code outside this package imports only the names below.
"""
from green_mlops.meter.checks import check_number, check_seconds, check_whole
from green_mlops.meter.discovery import discover
from green_mlops.meter.host import memory_total_bytes, usable_cpus
from green_mlops.meter.machine import machine_facts
from green_mlops.meter.meter import EnergyMeter, Window, validate_interval
from green_mlops.meter.nvml import discover_nvml
from green_mlops.meter.result import J_PER_WH, EnergyResult, SourceEnergy
from green_mlops.meter.settings import Settings, SettingsError, SettingsWarning
from green_mlops.meter.source import (
    DOMAINS,
    Discovery,
    Finding,
    PowerSource,
    Reading,
    SourceError,
    SourceInfo,
    Tick,
)
from green_mlops.meter.superchip import upgrade_superchips

__all__ = [
    "DOMAINS", "J_PER_WH", "Discovery", "EnergyMeter", "EnergyResult", "Finding", "PowerSource", "Reading",
    "check_number", "check_seconds", "check_whole",
    "Settings", "SettingsError", "SettingsWarning", "SourceEnergy", "SourceError", "SourceInfo", "Tick", "Window", "discover",
    "discover_nvml", "machine_facts", "memory_total_bytes", "upgrade_superchips", "usable_cpus", "validate_interval",
]
