"""User settings for the power sources, from keyword arguments or ``GREEN_MLOPS_*`` variables.

Why: fallbacks need facts a VM hides (a CPU's TDP, the DIMMs behind it). Users state them once,
in the environment or in code, and every source reads them from here.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any


class SettingsError(ValueError):
    """A setting has a value the meter cannot use; the message names the setting and the fix."""


class SettingsWarning(UserWarning):
    """A setting is possible but unlikely (a typo, say); the number is used as given."""


_ENV = {
    "powercap_root": "GREEN_MLOPS_POWERCAP_ROOT",
    "sysfs_root": "GREEN_MLOPS_SYSFS_ROOT",
    "cpu_tdp_w": "GREEN_MLOPS_CPU_TDP_W",
    "cpu_threads_per_package": "GREEN_MLOPS_CPU_THREADS_PER_PACKAGE",
    "dram_dimms": "GREEN_MLOPS_DRAM_DIMMS",
    "dram_voltage_v": "GREEN_MLOPS_DRAM_VOLTAGE_V",
    "dram_mt_s": "GREEN_MLOPS_DRAM_MT_S",
    "dram_w_per_gb": "GREEN_MLOPS_DRAM_W_PER_GB",
    "gpu_counter_interval": "GREEN_MLOPS_GPU_COUNTER_INTERVAL",
    "gpu_sample_interval": "GREEN_MLOPS_GPU_SAMPLE_INTERVAL",
}

#: Seconds between GPU energy counter reads when the gap is shaped by the driver's 20 ms power samples (NVML's
#: counter costs 3.3-4.2 ms of CPU a read on an H100/H200; the samples resolve what lies between reads) ...
COUNTER_INTERVAL_WITH_SAMPLES_S = 5.0
#: ... and when only a 100 ms power reading shapes it, so the counter itself keeps short spans right.
COUNTER_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Settings:
    """Facts and knobs the sources use; ``None`` means "find out from the machine"."""

    powercap_root: str = "/sys/class/powercap"
    sysfs_root: str = "/sys"
    cpu_tdp_w: float | None = None
    cpu_threads_per_package: int | None = None
    dram_dimms: int | None = None
    dram_voltage_v: float | None = None
    dram_mt_s: float | None = None
    dram_w_per_gb: float | None = None
    gpu_counter_interval: float | None = None  # None: COUNTER_INTERVAL_WITH_SAMPLES_S or COUNTER_INTERVAL_S
    gpu_sample_interval: float = 1.0  # the driver keeps ~2.4 s of 20 ms samples: fetch well within that

    def counter_interval(self, fine_curve: bool) -> float:
        """Seconds between GPU energy counter reads: the setting, else 5 s where 20 ms samples shape the gaps
        between reads (``fine_curve``) and 0.5 s where they do not."""
        if self.gpu_counter_interval is not None:
            return self.gpu_counter_interval
        return COUNTER_INTERVAL_WITH_SAMPLES_S if fine_curve else COUNTER_INTERVAL_S

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``GREEN_MLOPS_*`` variables, then keyword overrides (not None)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in _ENV.items():
            raw = env.get(var, "").strip()
            if raw:
                values[name] = _parse(name, var, raw, str(types[name]))
        for name, value in overrides.items():
            if name not in _ENV:
                raise TypeError(f"unknown setting {name!r}; known: {', '.join(_ENV)}")
            if value is not None:
                values[name] = _parse(name, name, str(value), str(types[name]))
        return cls(**values)


def _parse(name: str, origin: str, raw: str, typ: str) -> Any:
    if typ.startswith("str"):
        return raw
    try:
        value: float = int(raw) if typ.startswith("int") else float(raw)
    except ValueError:
        kind = "a whole number" if typ.startswith("int") else "a number"
        raise SettingsError(f"{origin}={raw!r} is not {kind}; set it to e.g. {_EXAMPLES[name]}") from None
    if not math.isfinite(value) or not value > 0:
        raise SettingsError(f"{origin}={raw!r} must be a finite number greater than 0; set it to e.g. "
                            f"{_EXAMPLES[name]}")
    low, high, limit = _PLAUSIBLE[name]
    if value > limit:
        raise SettingsError(f"{origin}={raw!r} is impossible here (above {limit:g}); set it to e.g. "
                            f"{_EXAMPLES[name]}")
    if not low <= value <= high:
        warnings.warn(f"{origin}={raw!r} is outside the usual {low:g}–{high:g}; using it as given, but check it "
                      f"(e.g. {_EXAMPLES[name]})", SettingsWarning, stacklevel=3)
    return value


# setting -> (usual low, usual high: outside warns; hard limit: above it is refused). Physically
# motivated: no CPU package draws 10 kW, no DIMM runs at 5 V, a counter read a day apart is no meter.
_PLAUSIBLE: dict[str, tuple[float, float, float]] = {
    "cpu_tdp_w": (1.0, 1000.0, 10_000.0),
    "cpu_threads_per_package": (1, 1024, 65_536),
    "dram_dimms": (1, 96, 4096),
    "dram_voltage_v": (0.5, 2.0, 5.0),
    "dram_mt_s": (100.0, 16_000.0, 100_000.0),
    "dram_w_per_gb": (0.01, 2.0, 100.0),
    "gpu_counter_interval": (0.01, 60.0, 3600.0),
    "gpu_sample_interval": (0.01, 2.0, 60.0),  # above ~2.4 s the driver's buffer overflows between fetches
}


_EXAMPLES = {
    "powercap_root": "/sys/class/powercap",
    "sysfs_root": "/sys",
    "cpu_tdp_w": "350 (the CPU package's TDP in watts)",
    "cpu_threads_per_package": "112 (logical CPUs of one package)",
    "dram_dimms": "16",
    "dram_voltage_v": "1.2",
    "dram_mt_s": "3200",
    "dram_w_per_gb": "0.375",
    "gpu_counter_interval": "5 (seconds between reads of the GPU energy counter)",
    "gpu_sample_interval": "1 (seconds between fetches of the GPU's 20 ms power samples; the driver keeps ~2.4 s)",
}
