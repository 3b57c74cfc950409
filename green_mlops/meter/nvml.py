"""NVIDIA GPUs through NVML: energy from the hardware counter, power curves from finer samples.

Measured on an H100 and an H200 (BENCHMARKS.md): the energy counter is exact but costs 3.3-4.2 ms of CPU a read
and updates every 100 ms; the driver also buffers power samples taken every 20 ms (``nvmlDeviceGetSamples``,
~0.35 ms a read, about 2.4 s deep), which resolve 50 ms load changes that the 100 ms
``NVML_FI_DEV_POWER_INSTANT`` field aliases. The two are read on their own clocks:

- the sample buffer every ``gpu_sample_interval`` (1 s), well within its depth, so no sample is lost;
- the counter every ``gpu_counter_interval`` (by default 5 s where the samples shape the energy between reads,
  0.5 s where only the instant field does), and at every forced tick: the meter's start and stop, the start
  and end of a window, and any read of a span that ends after the last tick. Those anchor the totals exactly
  as before; between two anchors the counter's increment is spread along the samples.

Reading the counter every 5 s instead of 0.5 s took the sampler thread from 36-44 to 24 µs per training step
on the H200. Per-step energy becomes final (and is published) once the counter read after the step arrives,
so up to ``gpu_counter_interval`` later; nothing is dropped. The instant field (~3 µs) is read every tick for
the live curve. The 1 s averaged ``nvmlDeviceGetPowerUsage`` lags load changes by a second and is used only
when nothing else exists.
"""
from __future__ import annotations

import math
import os
import time
from types import ModuleType
from typing import Any

from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Finding, PowerSource, Reading, SourceError, SourceInfo, Tick

METHOD_COUNTER = "nvml-energy-counter"
#: How often NVML refreshes power and energy (measured on an H100: every 100 ms).
UPDATE_PERIOD_S = 0.1
#: How much the driver's 20 ms power-sample buffer holds (measured on an H100): fetches further apart lose samples.
SAMPLE_BUFFER_S = 2.4
METHOD_SAMPLES = "nvml-power-samples"
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


def _power_samples(nvml: Any, handle: Any, since_us: int) -> list[tuple[int, float]]:
    """The driver's buffered power samples newer than ``since_us``: (wall-clock µs, mW)."""
    try:
        _, samples = nvml.nvmlDeviceGetSamples(handle, nvml.NVML_TOTAL_POWER_SAMPLES, since_us)
    except nvml.NVMLError_NotFound:  # nothing new since ``since_us``
        return []
    return [(int(x.timeStamp), float(x.sampleValue.uiVal)) for x in samples]


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
        self.has_samples, _ = _probe(lambda: _power_samples(nvml, handle, 0))
        self.has_samples = self.has_samples and bool(_power_samples(nvml, handle, 0))
        self._since_us = int(time.time() * 1e6)  # samples from before the source opened are not ours
        self.sample_interval = settings.gpu_sample_interval
        self._fetched_t: float | None = None
        if self.has_samples:
            curve = (f"the driver's 20 ms power samples (nvmlDeviceGetSamples, fetched every "
                     f"{self.sample_interval:g} s)")
        elif self.has_instant:
            curve = "NVML_FI_DEV_POWER_INSTANT"
        else:
            curve = "nvmlDeviceGetPowerUsage (1 s average)"
        if self.has_counter:
            method = METHOD_COUNTER
            self.counter_interval = settings.counter_interval(fine_curve=self.has_samples)
            self.anchor_lag_s = UPDATE_PERIOD_S / 2
            detail = (f"{self.gpu_name}: energy from nvmlDeviceGetTotalEnergyConsumption read every "
                      f"{self.counter_interval:g} s and at every start, stop and read; power curve from {curve}")
        elif self.has_samples:
            method = METHOD_SAMPLES
            self.counter_interval = self.sample_interval  # a full read fetches only the samples
            detail = (f"{self.gpu_name}: no energy counter ({counter_err}); energy integrated from {curve}")
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
        self._last_t: float | None = None
        self._offset_J = 0.0
        self._overflowed = False
        self.warnings: list[str] = []

    def read(self, tick: Tick) -> Reading:
        nvml = self._nvml
        try:
            power_mW = self._power_mW()
            energy = self._read_counter(tick.t) if (self.has_counter and tick.full) else None
            curve = self._read_samples(tick.t) if (self.has_samples and self._samples_due(tick)) else None
        except nvml.NVMLError as exc:
            raise SourceError(f"{self.info.name}: NVML read failed: {exc}") from exc
        return Reading(power_W=power_mW / 1000.0, energy_J=energy, extras=self._telemetry(), curve=curve)

    def _power_mW(self) -> float:
        """Power for the live curve: the instant field where it works, else the 1 s average."""
        if self.has_instant:
            return _instant_mW(self._nvml, self._h)
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._h))

    def _samples_due(self, tick: Tick) -> bool:
        """Fetch the sample buffer at every full tick (so it reaches each counter anchor) and every sample interval."""
        return tick.full or self._fetched_t is None or tick.t - self._fetched_t >= self.sample_interval

    def _read_samples(self, t: float) -> list[tuple[float, float]]:
        """New buffered samples, moved from the wall clock onto ``time.monotonic()``."""
        if self._fetched_t is not None and t - self._fetched_t > SAMPLE_BUFFER_S and not self._overflowed:
            self._overflowed = True
            self.warnings.append(f"{self.info.name}: power samples fetched {t - self._fetched_t:.1f} s apart; the "
                                 f"driver keeps about {SAMPLE_BUFFER_S:g} s, so some were lost and the power curve is "
                                 "interpolated over them")
        self._fetched_t = t
        samples = _power_samples(self._nvml, self._h, self._since_us)
        if not samples:
            return []
        self._since_us = max(ts for ts, _ in samples)
        offset = time.time() - time.monotonic()
        return sorted((ts / 1e6 - offset, mW / 1000.0) for ts, mW in samples)

    def _read_counter(self, t: float) -> float | None:
        """Cumulative joules since opening, or None when the counter cannot have moved since the last read.

        Two reads within one update period may see the same value; anchoring both would give the
        time between them zero energy, so the second is skipped (the power curve covers it).
        """
        if self._last_t is not None and t - self._last_t < UPDATE_PERIOD_S:
            return None
        self._last_t = t
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
        except Exception:  # telemetry is best effort; NaN marks what is missing
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
    except Exception as exc:
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
        except Exception as exc:
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
    except Exception:
        return None
