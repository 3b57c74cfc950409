"""A stand-in for the NVIDIA driver at the ``pynvml`` function boundary (the hardware edge).

Each fake GPU follows a power profile p(t) in watts over ``time.monotonic()``; its energy counter
and instant field update every 100 ms, its sample buffer holds 20 ms samples for 2.4 s (wall-clock
µs stamps), as measured on an H100, and its 1 s average lags.

Superchips (``c2c=True``) answer ``nvmlDeviceGetC2cModeInfoV`` with ``isC2cEnabled=1`` and, with
``module_scope=True``, the power field at ``NVML_POWER_SCOPE_MODULE``; their ``power`` profile and
energy counter are then the whole module's (GPU + Grace CPU + memory: Zeus pull request 172, Kepler
pull request 1884). A GB10 is ``c2c=True, module_scope=False``: it refuses module scope with
NVML_ERROR_NOT_SUPPORTED (Zeus pull request 242) and its memory info is not supported (DGX Spark
known issues, recorded in snowflakedb/ArcticTraining pull request 345). Field ids arrive as pynvml
passes them: a bare id, or an ``(id, scopeId)`` tuple.
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pynvml


class FakeGpu:
    def __init__(self, name: str = "NVIDIA H100 80GB HBM3", uuid: str = "GPU-aaaa", power=lambda t: 100.0,
                 counter: bool = True, instant: bool = True, samples: bool = True, update: float = 0.1,
                 c2c: bool = False, module_scope: bool = False, memory_info: bool = True) -> None:
        self.name, self.uuid, self.power = name, uuid, power
        self.c2c, self.module_scope, self.memory_info = c2c, module_scope, memory_info
        self.counter, self.instant, self.samples, self.update = counter, instant, samples, update
        self.wall_offset = time.time() - time.monotonic()
        self.t0 = time.monotonic()
        self.fail: set[str] = set()
        self.counter_calls = 0
        self.samples_calls = 0

    def energy_J(self, t: float, step: float = 0.0005) -> float:
        """Exact-enough integral of the profile from creation to the last 100 ms update before t."""
        end = self.t0 + math.floor((t - self.t0) / self.update) * self.update
        n = max(int(round((end - self.t0) / step)), 0)
        return sum(self.power(self.t0 + (i + 0.5) * step) for i in range(n)) * step

    def true_energy(self, a: float, b: float, step: float = 0.0005) -> float:
        n = max(int(round((b - a) / step)), 1)
        h = (b - a) / n
        return sum(self.power(a + (i + 0.5) * h) for i in range(n)) * h

    def buffer(self, now: float, since_us: int) -> list[SimpleNamespace]:
        """20 ms samples of the last 2.4 s newer than ``since_us``."""
        last = math.floor((now - self.t0) / 0.02)
        out = []
        for k in range(max(last - 120, 0), last + 1):
            t = self.t0 + k * 0.02
            ts = int((t + self.wall_offset) * 1e6)
            if ts > since_us:
                out.append(SimpleNamespace(timeStamp=ts, sampleValue=SimpleNamespace(uiVal=int(self.power(t) * 1000))))
        return out

    def sampled_power(self, t: float) -> float:
        return self.power(self.t0 + math.floor((t - self.t0) / self.update) * self.update)


def install(monkeypatch, gpus: list[FakeGpu], init_error: Exception | None = None) -> list[FakeGpu]:
    """Patch pynvml's functions so the meter sees ``gpus``."""
    NVMLError = pynvml.NVMLError

    def check(g: FakeGpu, call: str) -> None:
        if call in g.fail:
            raise NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    def init():
        if init_error is not None:
            raise init_error

    def handle(i):
        if i >= len(gpus):
            raise NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpus[i]

    def energy(g):
        check(g, "energy")
        if not g.counter:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        g.counter_calls += 1
        return int(g.energy_J(time.monotonic()) * 1000)

    def fields(g, ids):
        check(g, "instant")
        fid, scope = ids[0] if isinstance(ids[0], tuple) else (ids[0], None)
        if scope == pynvml.NVML_POWER_SCOPE_MODULE:
            ok = g.module_scope and len(ids) == 1 and fid == pynvml.NVML_FI_DEV_POWER_INSTANT
        else:
            ok = g.instant and len(ids) == 1 and fid == pynvml.NVML_FI_DEV_POWER_INSTANT
        value = SimpleNamespace(uiVal=int(g.sampled_power(time.monotonic()) * 1000) if ok else 0)
        ret = pynvml.NVML_SUCCESS if ok else pynvml.NVML_ERROR_NOT_SUPPORTED
        return [SimpleNamespace(nvmlReturn=ret, value=value)]

    def usage(g):
        check(g, "average")
        return int(g.sampled_power(time.monotonic() - 0.5) * 1000)

    def samples(g, kind, since):
        check(g, "samples")
        if not g.samples or kind != pynvml.NVML_TOTAL_POWER_SAMPLES:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        g.samples_calls += 1
        got = g.buffer(time.monotonic(), since)
        if not got:
            raise NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, got

    def c2c(g):
        if not g.c2c:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(isC2cEnabled=1)

    def memory(g):
        if not g.memory_info:
            raise NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(used=2 * 1024**3, total=80 * 1024**3)

    patches = {
        "nvmlDeviceGetC2cModeInfoV": c2c,
        "nvmlDeviceGetSamples": samples,
        "nvmlInit": init,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": handle,
        "nvmlDeviceGetName": lambda g: g.name,
        "nvmlDeviceGetUUID": lambda g: g.uuid,
        "nvmlDeviceGetTotalEnergyConsumption": energy,
        "nvmlDeviceGetFieldValues": fields,
        "nvmlDeviceGetPowerUsage": usage,
        "nvmlDeviceGetUtilizationRates": lambda g: SimpleNamespace(gpu=97, memory=40),
        "nvmlDeviceGetMemoryInfo": memory,
        "nvmlDeviceGetTemperature": lambda g, sensor: 55,
        "nvmlSystemGetDriverVersion": lambda: "580.159.04",
    }
    for name, fn in patches.items():
        monkeypatch.setattr(pynvml, name, fn)
    return gpus
