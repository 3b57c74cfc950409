"""Memory a metered run keeps per step for its end-of-run plot, and the attribution thread's CPU per step (issue #16).

A real ``MeteredRun`` (no MLflow, no files) on this machine's CPU and DRAM sources plus ``--gpus`` constant
stand-in GPU sources (so the per-step metric set is a GPU run's: nine metrics with one GPU and an idle
baseline), fed ``--steps`` steps in blocks of ``--block`` (one block per publish, as the stream thread does
about once a second). Reported: the bytes ``run.steps`` holds per step after ``finish()`` (tracemalloc: what
is freed when it is dropped) and the CPU the publishing thread spends per step (attribution and the block).

    PYTHONPATH=. python benchmarks/step_memory.py [--steps 100000] [--block 1000] [--gpus 1]
"""
from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

from green_mlops.meter import Settings, discover
from green_mlops.meter.source import PowerSource, Reading, SourceInfo
from green_mlops.run.core import MeterConfig, MeteredRun
from green_mlops.run.sinks import Sinks


class ConstantGpu(PowerSource):
    """A stand-in GPU drawing a constant 300 W: this benchmark needs the metric names, not a GPU."""

    def __init__(self, index: int) -> None:
        self.info = SourceInfo(f"gpu{index}", "gpu", "estimated", "benchmark-constant")

    def read(self, tick) -> Reading:
        return Reading(power_W=300.0)


def fit(sources: list[PowerSource], steps: int, block: int) -> tuple[MeteredRun, float]:
    """One metered run of ``steps`` steps published in blocks; returns it and its publishing CPU-seconds."""
    run = MeteredRun("fit", MeterConfig(interval=0.05, idle_seconds=0.2, print_summary=False), Sinks(), sources)
    publish_cpu = 0.0
    for first in range(0, steps, block):
        for step in range(first, min(first + block, steps)):
            run.step(step)
        run.meter._sampler.tick_now()  # the data past these marks is final now
        t0 = time.thread_time()
        run.stream.publish()
        publish_cpu += time.thread_time() - t0
    run.finish("completed", step=steps)
    return run, publish_cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--block", type=int, default=1000)
    p.add_argument("--gpus", type=int, default=1)
    args = p.parse_args()
    sources = discover(Settings.from_env()).sources + [ConstantGpu(i) for i in range(args.gpus)]
    _, publish_cpu = fit(sources, args.steps, args.block)  # CPU without tracemalloc, which slows allocation
    tracemalloc.start()
    run, _ = fit(sources, args.steps, args.block)
    n, keys = len(run.steps), len(run.steps[-1][2])
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    run.steps = None
    gc.collect()
    freed = held - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(f"{n} steps × {keys} metrics kept: {freed / 1e6:.2f} MB = {freed / n:.1f} bytes per step "
          f"({freed / n / keys:.1f} per metric); publishing thread CPU {publish_cpu / n * 1e6:.2f} µs per step")


if __name__ == "__main__":
    main()
