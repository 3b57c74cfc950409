"""This process's share of the power sources in a multi-process run: its own GPU; host once per node."""
from __future__ import annotations

from green_mlops.meter import PowerSource, Settings, discover


def process_sources(settings: Settings | None, *, world_size: int = 1, local_rank: int = 0,
                    gpu_index: int | None = None) -> list[PowerSource]:
    """Sources this process meters: with several processes, only the GPU it trains on (``gpu_index``),
    and CPU and DRAM only on each node's local rank 0, so that nothing is counted twice."""
    found = discover(settings or Settings.from_env())
    mine = []
    for s in found.sources:
        if s.info.domain == "gpu":
            if world_size > 1 and gpu_index is not None and getattr(s, "index", None) != gpu_index:
                s.close()
                continue
        elif local_rank != 0:
            continue
        mine.append(s)
    return mine
