"""NVIDIA C2C superchips (Grace Hopper GH200, Grace Blackwell GB200/GB300, GB10): power at module scope.

On a GH200 the NVML energy counter covers the whole module, GPU, Grace CPU and memory (Zeus pull
request 172; Kepler pull request 1884), so a CPU or DRAM source beside it would count them twice.
A GPU whose ``nvmlDeviceGetC2cModeInfoV`` reports C2C is probed once for
``NVML_FI_DEV_POWER_INSTANT`` at ``NVML_POWER_SCOPE_MODULE``: where it answers, the GPU becomes a
``module`` source that ``covers`` the CPU and DRAM; where it is refused (GB10 supports GPU scope
only, Zeus pull request 242) the GPU stays a GPU and CPU and memory are metered on their own.
Module k is taken to hold the Grace CPU of socket rank k (sockets ranked by package id, which Arm
firmware does not number from 0).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from green_mlops.meter import host
from green_mlops.meter.nvml import NvmlGpu
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Domain, Finding, SourceInfo

METHOD_MODULE_COUNTER = "nvml-module-energy-counter"
METHOD_MODULE_INSTANT = "nvml-module-power-instant"
INCLUDES = "GPU + Grace CPU + memory"


def c2c_enabled(nvml: Any, handle: Any) -> bool:
    """True when NVML says the GPU talks to its CPU over NVLink-C2C (a superchip)."""
    try:
        return bool(nvml.nvmlDeviceGetC2cModeInfoV(handle).isC2cEnabled)
    except Exception:  # NotSupported on PCIe GPUs, FunctionNotFound on old drivers/bindings
        return False


def module_mW(nvml: Any, handle: Any) -> float:
    """NVML_FI_DEV_POWER_INSTANT at module scope, in mW; raises the NVML error the field reports."""
    fv = nvml.nvmlDeviceGetFieldValues(handle, [(nvml.NVML_FI_DEV_POWER_INSTANT, nvml.NVML_POWER_SCOPE_MODULE)])[0]
    if fv.nvmlReturn != nvml.NVML_SUCCESS:
        raise nvml.NVMLError(fv.nvmlReturn)
    return float(fv.value.uiVal)


def probe_module_scope(nvml: Any, handle: Any) -> str | None:
    """None when module-scope power answers, else why not (probed once; the scope never changes)."""
    try:
        module_mW(nvml, handle)
        return None
    except Exception as exc:  # NVMLError_NotSupported (GB10), AttributeError on old bindings
        return str(exc) or type(exc).__name__


class NvmlModule(NvmlGpu):
    """A superchip module: its energy counter and module-scope power cover GPU, CPU and memory."""

    covers: tuple[Domain, ...] = ("cpu", "dram")

    def __init__(self, nvml: Any, handle: Any, index: int, nvml_index: int, settings: Settings) -> None:
        super().__init__(nvml, handle, index, nvml_index, settings)
        self.has_instant, self.has_samples = True, False  # the 20 ms sample buffer is GPU scope only
        curve = "NVML_FI_DEV_POWER_INSTANT at NVML_POWER_SCOPE_MODULE"
        if self.has_counter:
            self.counter_interval = settings.counter_interval(fine_curve=False)
            method = METHOD_MODULE_COUNTER
            detail = (f"{self.gpu_name}: the whole module ({INCLUDES}); energy from "
                      f"nvmlDeviceGetTotalEnergyConsumption, which covers the module on a C2C superchip, "
                      f"read every {self.counter_interval:g} s; power curve from {curve}")
        else:
            method, self.counter_interval, self.anchor_lag_s = METHOD_MODULE_INSTANT, 0.0, 0.0
            detail = f"{self.gpu_name}: the whole module ({INCLUDES}); energy integrated from {curve}"
        self.info = SourceInfo(f"module{index}", "gpu", "measured", method, detail)

    def _power_mW(self) -> float:
        return module_mW(self._nvml, self._h)


def upgrade_superchips(found: Discovery, settings: Settings, cpu_root: str = "/sys/devices/system/cpu") -> Discovery:
    """NVML's discovery with every C2C GPU metered at module scope where NVML allows it."""
    out = Discovery(findings=[f for f in found.findings])
    modules: list[NvmlModule] = []
    for src in found.sources:
        if not isinstance(src, NvmlGpu) or not c2c_enabled(src._nvml, src._h):
            out.sources.append(src)
            continue
        refused = probe_module_scope(src._nvml, src._h)
        if refused is not None:
            src.info = replace(src.info, detail=(
                f"{src.info.detail}; C2C superchip, but module-scope power is refused ({refused}): GPU scope "
                "only, so the Grace CPU and memory are metered by their own sources"))
            out.sources.append(src)
            _replace_finding(out, src.info.name, Finding(src.info.name, "measured", src.info.method, src.info.detail))
            continue
        module = NvmlModule(src._nvml, src._h, src.index, src.nvml_index, settings)
        modules.append(module)
        out.sources.append(module)
        _replace_finding(out, src.info.name, Finding(module.info.name, "measured", module.info.method,
                                                     module.info.detail))
    if modules:
        out.findings.extend(_socket_gaps(modules, cpu_root))
    return out


def _replace_finding(found: Discovery, component: str, finding: Finding) -> None:
    found.findings[:] = [finding if f.component == component else f for f in found.findings]


def _socket_gaps(modules: list[NvmlModule], cpu_root: str) -> list[Finding]:
    """A finding when this process may run on a socket whose module is hidden (its CPU energy is unmetered)."""
    ranks = host.socket_ranks(cpu_root)
    mine = {ranks[c] for c in host.usable_cpus() if c in ranks}
    covered = {m.nvml_index for m in modules}
    gaps = sorted(mine - covered)
    if not gaps:
        return []
    names = ", ".join(f"socket {r}" for r in gaps)
    return [Finding("cpu", "absent", "module-counter",
                    f"this process may run on CPUs of {names}, whose module is not visible "
                    "(CUDA_VISIBLE_DEVICES): that Grace CPU's energy is in no visible module's counter and is "
                    "not metered; pin the process (taskset) to the CPUs of its visible modules")]
