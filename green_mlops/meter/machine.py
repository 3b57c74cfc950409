"""Facts about this machine that make energy figures comparable: CPU, cores, RAM, GPUs, driver, VM."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from green_mlops.meter import host
from green_mlops.meter.cpu_model import cpu_model_name


def _cpuinfo_field(name: str, path: str = "/proc/cpuinfo") -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def is_virtual_machine(path: str = "/proc/cpuinfo") -> bool:
    """True when the CPU flags carry ``hypervisor`` (a guest of KVM, Xen, Hyper-V, VMware...)."""
    flags = _cpuinfo_field("flags", path) or ""
    return "hypervisor" in flags.split()


def machine_facts(nvml: Any | None = None) -> dict[str, str]:
    """Hardware facts as strings, keyed as the ``green_mlops.hw.*`` tags will be."""
    facts = {
        "cpu_model": cpu_model_name(),
        "cpu_count": str(len(host.usable_cpus())),
        "ram_gb": f"{host.memory_total_bytes() / 1e9:.1f}",
        "os": f"{platform.system()} {platform.release()}",
        "virtual_machine": str(is_virtual_machine()).lower(),
        "python": platform.python_version(),
    }
    try:
        import pynvml

        nvml = nvml or pynvml
        nvml.nvmlInit()
        names = []
        for i in range(nvml.nvmlDeviceGetCount()):
            n = nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))
            names.append(n.decode() if isinstance(n, bytes) else n)
        drv = nvml.nvmlSystemGetDriverVersion()
        facts["gpu_count"] = str(len(names))
        facts["gpu_names"] = ", ".join(sorted(set(names)))
        facts["gpu_driver"] = drv.decode() if isinstance(drv, bytes) else drv
    except Exception:  # no NVIDIA driver: report zero GPUs
        facts["gpu_count"] = "0"
    return facts
