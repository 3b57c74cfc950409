"""Host facts the estimating sources need: usable CPUs, their utilisation, and memory in use.

CPU utilisation is computed from ``psutil.cpu_times`` deltas held here, not ``psutil.cpu_percent``,
whose module-global state would be disturbed by (and would disturb) the user's own calls.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import psutil


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask, or all of them)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return list(range(psutil.cpu_count() or 1))


def cgroup_cpu_limit(root: str = "/sys/fs/cgroup") -> float | None:
    """CPUs granted by a cgroup v2 quota (``cpu.max``), or None when unlimited or unknown."""
    try:
        quota, period = Path(root, "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(float(quota) / float(period), 0.01)
    except (ValueError, ZeroDivisionError):
        return None


def effective_cpu_count() -> float:
    """How many CPUs' worth of capacity this process can use: affinity, capped by a cgroup quota."""
    n = float(len(usable_cpus()))
    limit = cgroup_cpu_limit()
    return min(n, limit) if limit else n


class CpuUtilisation:
    """Mean busy fraction (0–1) of the usable CPUs between successive calls of :meth:`sample`."""

    def __init__(self, cpus: list[int] | None = None) -> None:
        self.cpus = cpus if cpus is not None else usable_cpus()
        self._last = self._times()
        self._value = math.nan

    def _times(self) -> list[tuple[float, float]]:
        per = psutil.cpu_times(percpu=True)
        out = []
        for i in self.cpus:
            if i < len(per):
                t = per[i]
                idle = t.idle + getattr(t, "iowait", 0.0)
                out.append((sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0), idle))
        return out

    def sample(self) -> float:
        """Busy fraction since the previous call.

        Calls closer together than the kernel's accounting tick (10 ms) see no CPU time pass: they
        return the previous value (NaN before there is one) and keep the older baseline.
        """
        now = self._times()
        busy = total = 0.0
        for (t0, i0), (t1, i1) in zip(self._last, now):
            dt = t1 - t0
            total += dt
            busy += dt - (i1 - i0)
        if total <= 0:
            return self._value
        self._last = now
        self._value = min(max(busy / total, 0.0), 1.0)
        return self._value


def memory_used_bytes() -> float:
    """Bytes of RAM in use (total − available), as the paper's "DRAM use"."""
    vm = psutil.virtual_memory()
    return float(vm.total - vm.available)


def memory_total_bytes() -> float:
    return float(psutil.virtual_memory().total)


def socket_ranks(root: str = "/sys/devices/system/cpu") -> dict[int, int]:
    """Logical CPU → socket rank (0, 1, … in order of package id), from ``topology/physical_package_id``.

    Arm firmware numbers packages as it likes (not from 0, not contiguous), so ids are ranked rather
    than used as socket numbers. Empty when the topology cannot be read.
    """
    ids: dict[int, int] = {}
    for d in Path(root).glob("cpu[0-9]*"):
        try:
            ids[int(d.name[3:])] = int((d / "topology" / "physical_package_id").read_text().strip())
        except (OSError, ValueError):
            continue
    rank = {pkg: r for r, pkg in enumerate(sorted(set(ids.values())))}
    return {cpu: rank[pkg] for cpu, pkg in ids.items()}
