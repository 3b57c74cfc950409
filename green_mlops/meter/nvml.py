"""NVIDIA GPUs through NVML: energy from the hardware counter, power curves from the instant field.

Measured on an H100 (see DESIGN.md, BENCHMARKS.md): the energy counter is exact but costs ~3.5 ms of
CPU a read, so it is read every ``gpu_counter_interval`` (0.5 s by default); the instantaneous power
field costs ~3 µs and is read every tick to shape the curve between counter reads. The 1 s averaged
``nvmlDeviceGetPowerUsage`` lags load changes by a second and is used only when nothing else exists.
"""
from __future__ import annotations

import math
import os
from types import ModuleType
from typing import Any

from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Finding, PowerSource, Reading, SourceError, SourceInfo, Tick

METHOD_COUNTER = "nvml-energy-counter"
METHOD_INSTANT = "nvml-power-instant"
METHOD_AVERAGE = "nvml-power-average"


def _load_nvml() -> ModuleType:
    import pynvml  # nvidia-ml-py

    return pynvml


def visible_gpu_selectors(env: dict[str, str] | None = None) -> list[str] | None:
    """Entries of CUDA_VISIBLE_DEVICES (indices or UUID prefixes), or None when it is unset.

    Like CUDA, parsing stops at the first invalid entry (e.g. ``-1``), so ``-1`` or ``""`` hides
    every GPU.
    """
    env = os.environ if env is None else env
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    out: list[str] = []
    for item in (s.strip() for s in raw.split(",")):
        if item.isdigit() or item.startswith(("GPU-", "MIG-")):
            out.append(item)
        else:
            break
    return out


def _select_handles(nvml: Any, selectors: list[str] | None) -> list[tuple[int, Any]]:
    count = nvml.nvmlDeviceGetCount()
    handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    if selectors is None:
        return handles
    chosen: list[tuple[int, Any]] = []
    for sel in selectors:
        if sel.isdigit():
            idx = int(sel)
            if idx >= count:
                break
            chosen.append(handles[idx])
        else:
            match = [h for h in handles if _text(nvml.nvmlDeviceGetUUID(h[1])).startswith(sel)]
            if len(match) != 1:
                break
            chosen.append(match[0])
    return chosen


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _instant_mW(nvml: Any, handle: Any) -> float:
    """NVML_FI_DEV_POWER_INSTANT in mW; raises the NVML error the field reports."""
    fv = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
    if fv.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(fv.nvmlReturn)
    return float(fv.value.uiVal)


def _probe(call: Any) -> tuple[bool, str]:
    try:
        call()
        return True, ""
    except Exception as exc:  # NVMLError subclasses, AttributeError on old bindings
        return False, str(exc) or type(exc).__name__


class NvmlGpu(PowerSource):
    """One visible GPU. ``index`` is its position among visible GPUs (what CUDA calls it)."""

    def __init__(self, nvml: Any, handle: Any, index: int, nvml_index: int, settings: Settings) -> None:
        self._nvml = nvml
        self._h = handle
        self.index = index
        self.nvml_index = nvml_index
        self.gpu_name = _text(nvml.nvmlDeviceGetName(handle))
        self.has_counter, counter_err = _probe(lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        self.has_instant, instant_err = _probe(lambda: _instant_mW(nvml, handle))
        has_average, average_err = _probe(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        curve = "NVML_FI_DEV_POWER_INSTANT" if self.has_instant else "nvmlDeviceGetPowerUsage (1 s average)"
        if self.has_counter:
            method = METHOD_COUNTER
            self.counter_interval = settings.gpu_counter_interval
            detail = (f"{self.gpu_name}: energy from nvmlDeviceGetTotalEnergyConsumption read every "
                      f"{self.counter_interval:g} s; power curve from {curve}")
        elif self.has_instant:
            method = METHOD_INSTANT
            detail = (f"{self.gpu_name}: no energy counter ({counter_err}); energy integrated from "
                      "NVML_FI_DEV_POWER_INSTANT samples")
        elif has_average:
            method = METHOD_AVERAGE
            detail = (f"{self.gpu_name}: no energy counter ({counter_err}) nor instant power field "
                      f"({instant_err}); energy integrated from the 1 s averaged nvmlDeviceGetPowerUsage, "
                      "which lags load changes by about a second")
        else:
            raise SourceError(f"{self.gpu_name}: no NVML power reading works ({average_err})")
        self.info = SourceInfo(f"gpu{index}", "gpu", "measured", method, detail)
        self._counter0: float | None = None
        self._last_raw: float | None = None
        self._offset_J = 0.0
        self.warnings: list[str] = []

    def read(self, tick: Tick) -> Reading:
        nvml, h = self._nvml, self._h
        try:
            power_mW = _instant_mW(nvml, h) if self.has_instant else float(nvml.nvmlDeviceGetPowerUsage(h))
            energy = self._read_counter() if (self.has_counter and tick.full) else None
        except nvml.NVMLError as exc:
            raise SourceError(f"{self.info.name}: NVML read failed: {exc}") from exc
        return Reading(power_W=power_mW / 1000.0, energy_J=energy, extras=self._telemetry())

    def _read_counter(self) -> float:
        raw = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._h)) / 1000.0
        if self._counter0 is None:
            self._counter0 = raw
        elif self._last_raw is not None and raw < self._last_raw:
            # The driver restarted the counter (e.g. reloaded); continue from the last good value.
            self.warnings.append(f"{self.info.name}: energy counter went backwards; treated as a reset")
            self._offset_J += self._last_raw - self._counter0
            self._counter0 = 0.0
        self._last_raw = raw
        return self._offset_J + raw - self._counter0

    def _telemetry(self) -> dict[str, float]:
        nvml, h, p = self._nvml, self._h, self.info.name
        out = {f"{p}.util_pct": math.nan, f"{p}.mem_util_pct": math.nan,
               f"{p}.mem_used_B": math.nan, f"{p}.temp_C": math.nan}
        try:
            u = nvml.nvmlDeviceGetUtilizationRates(h)
            out[f"{p}.util_pct"], out[f"{p}.mem_util_pct"] = float(u.gpu), float(u.memory)
            out[f"{p}.mem_used_B"] = float(nvml.nvmlDeviceGetMemoryInfo(h).used)
            out[f"{p}.temp_C"] = float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
        except Exception:  # noqa: BLE001 - telemetry is best effort; NaN marks what is missing
            pass
        return out


def discover_nvml(settings: Settings, nvml: Any | None = None, env: dict[str, str] | None = None) -> Discovery:
    """Open every GPU visible to CUDA; say why when there is none."""
    found = Discovery()
    try:
        nvml = nvml or _load_nvml()
    except ImportError:
        found.findings.append(Finding("gpu", "absent", "nvml", "nvidia-ml-py (pynvml) is not installed"))
        return found
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        found.findings.append(Finding("gpu", "absent", "nvml", f"NVML unavailable: {exc} (no NVIDIA driver?)"))
        return found
    selectors = visible_gpu_selectors(env)
    try:
        handles = _select_handles(nvml, selectors)
    except Exception as exc:  # noqa: BLE001
        found.findings.append(Finding("gpu", "absent", "nvml", f"NVML could not list GPUs: {exc}"))
        return found
    if not handles:
        why = ("CUDA_VISIBLE_DEVICES hides every GPU" if selectors is not None
               else "NVML reports no GPU")
        found.findings.append(Finding("gpu", "absent", "nvml", why))
        return found
    for index, (nvml_index, handle) in enumerate(handles):
        try:
            gpu = NvmlGpu(nvml, handle, index, nvml_index, settings)
        except Exception as exc:  # noqa: BLE001
            found.findings.append(Finding(f"gpu{index}", "absent", "nvml", str(exc)))
            continue
        found.sources.append(gpu)
        found.findings.append(Finding(gpu.info.name, "measured", gpu.info.method, gpu.info.detail))
    return found


def driver_version(nvml: Any | None = None) -> str | None:
    """The NVIDIA driver version, or None without NVML."""
    try:
        nvml = nvml or _load_nvml()
        nvml.nvmlInit()
        return _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001
        return None
