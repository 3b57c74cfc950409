"""The paper's derived metrics for discriminative models (Sánchez-Mompó et al. 2025, §6.1.3, Table 3).

One definition each, shared by the Lightning callback and the analysis. Every function returns
None when an input is missing or a denominator is zero: no silent zeros or NaNs.
"""
from __future__ import annotations

import math


def _ok(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if _ok(a, b) and b != 0 else None  # type: ignore[operator]


def energy_per_sample(energy_J: float | None, samples: float | None) -> float | None:
    """"The total average energy consumption for one sample": energy over samples, in J."""
    return _div(energy_J, samples)


def macs_param(macs: float | None, trainable_params: float | None) -> float | None:
    """"The ratio of MACs to trainable parameters": computational intensity of the architecture."""
    return _div(macs, trainable_params)


def work_done(trainable_params: float | None, samples: float | None, duration_s: float | None) -> float | None:
    """"The trainable parameters processed per second": trainable params × samples / seconds.

    The paper gives no formula; we read "processed" as each sample passing through every trainable
    parameter, so the unit is parameter-samples per second.
    """
    if not _ok(trainable_params, samples):
        return None
    return _div(trainable_params * samples, duration_s)  # type: ignore[operator]


def overall_efficiency(accuracy: float | None, work: float | None, utilisation: float | None) -> float | None:
    """"The ratio of the accuracy multiplied by the work_done over the system's utilisation" (0–1)."""
    if not _ok(accuracy, work):
        return None
    return _div(accuracy * work, utilisation)  # type: ignore[operator]


def work_per_unit_power(work: float | None, power_W: float | None) -> float | None:
    """"work_done divided by the observed power": parameter-samples per second per watt."""
    return _div(work, power_W)


def energy_scaling_factor(total_power_W: float | None, params: float | None) -> float | None:
    """"The ratio of the total power (CPU, GPU and RAM) to model parameters", W per parameter."""
    return _div(total_power_W, params)


def gpu_energy_scaling_factor(gpu_power_W: float | None, params: float | None) -> float | None:
    """"Similar to energy_scaling_factor but focused on just the GPU's absolute power consumption"."""
    return _div(gpu_power_W, params)


def model_size_to_ram(model_size_bytes: float | None, ram_bytes: float | None) -> float | None:
    """"Compares model size to memory usage": model bytes over the memory available to it."""
    return _div(model_size_bytes, ram_bytes)


def derived_metrics(*, energy_J: float | None = None, samples: float | None = None,
                    duration_s: float | None = None, accuracy: float | None = None, macs: float | None = None,
                    trainable_params: float | None = None, total_params: float | None = None,
                    model_size_bytes: float | None = None, gpu_energy_J: float | None = None,
                    utilisation: float | None = None, ram_bytes: float | None = None) -> dict[str, float]:
    """Every metric of Table 3 that the given inputs allow, keyed by the paper's names."""
    power = _div(energy_J, duration_s)
    gpu_power = _div(gpu_energy_J, duration_s)
    work = work_done(trainable_params, samples, duration_s)
    values = {
        "energy_per_sample": energy_per_sample(energy_J, samples),
        "macs_param": macs_param(macs, trainable_params),
        "work_done": work,
        "overall_efficiency": overall_efficiency(accuracy, work, utilisation),
        "work_per_unit_power": work_per_unit_power(work, power),
        "energy_scaling_factor": energy_scaling_factor(power, trainable_params),
        "gpu_energy_scaling_factor": gpu_energy_scaling_factor(gpu_power, trainable_params),
        "parameters": float(trainable_params) if _ok(trainable_params) else None,
        "model_size_to_ram": model_size_to_ram(model_size_bytes, ram_bytes),
    }
    return {k: v for k, v in values.items() if v is not None}
