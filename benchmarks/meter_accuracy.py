"""GPU meter accuracy on real hardware: whole-run energy, window bookkeeping, short windows, overhead.

Runs ~25 s of load with idle and busy phases, a periodic 50 ms busy / 50 ms idle stretch and a
250 ms / 250 ms one, all under one EnergyMeter, and compares with the script's own reads of the
NVML energy counter (the reference) and with integrating NVML's power readings polled at 10 Hz.

    PYTHONPATH=. python3 benchmarks/meter_accuracy.py      # writes details to $OUT (or ./bench_out)

Needs an NVIDIA GPU with an energy counter (Volta or newer) and torch with CUDA.
"""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import pynvml as N
import torch

from green_mlops.meter import EnergyMeter, machine_facts

OUT = Path(os.environ.get("OUT", "bench_out"))
OUT.mkdir(parents=True, exist_ok=True)
PLAN = [("idle", 3.0), ("busy", 4.0), ("idle", 3.0), ("pulse50", 5.0), ("idle", 2.0), ("pulse250", 5.0), ("idle", 3.0)]


class Poller(threading.Thread):
    """Polls the averaged and instant power at 10 Hz, as tools that integrate power readings do."""

    def __init__(self, handle) -> None:
        super().__init__(daemon=True)
        self.h, self.rows, self.stop_flag = handle, [], threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            fv = N.nvmlDeviceGetFieldValues(self.h, [N.NVML_FI_DEV_POWER_INSTANT])[0]
            self.rows.append((time.monotonic(), N.nvmlDeviceGetPowerUsage(self.h) / 1000, fv.value.uiVal / 1000))
            self.stop_flag.wait(0.1)

    def integrate(self, a: float, b: float, col: int) -> float:
        t = np.array([r[0] for r in self.rows])
        p = np.array([r[col] for r in self.rows])
        grid = np.linspace(a, b, 20001)
        return float(np.trapezoid(np.interp(grid, t, p), grid))


def run_load(meter: EnergyMeter, a: torch.Tensor, b: torch.Tensor) -> list[tuple[str, float, float]]:
    """Follow PLAN; return (kind, start, end) of every busy and idle half-period actually run."""
    spans = []
    for kind, seconds in PLAN:
        end = time.monotonic() + seconds
        if kind == "idle":
            s = time.monotonic()
            time.sleep(max(end - time.monotonic(), 0))
            spans.append(("idle", s, time.monotonic()))
        elif kind == "busy":
            s = time.monotonic()
            while time.monotonic() < end - 0.002:
                a @ b
                torch.cuda.synchronize()
            spans.append(("busy", s, time.monotonic()))
        else:
            half = 0.05 if kind == "pulse50" else 0.25
            k = 0
            t0 = time.monotonic()
            while t0 + (k + 1) * 2 * half <= end:
                s = time.monotonic()
                while time.monotonic() < t0 + k * 2 * half + half - 0.0015:
                    a @ b
                    torch.cuda.synchronize()
                spans.append((f"{kind}-busy", s, time.monotonic()))
                s = time.monotonic()
                time.sleep(max(t0 + (k + 1) * 2 * half - time.monotonic(), 0))
                spans.append((f"{kind}-idle", s, time.monotonic()))
                k += 1
            time.sleep(max(end - time.monotonic(), 0))
    return spans


def main() -> None:
    N.nvmlInit()
    h = N.nvmlDeviceGetHandleByIndex(0)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    time.sleep(2.0)

    meter = EnergyMeter(interval=0.1, name="benchmark")
    gpu = next(s for s in meter.sources if s.info.domain == "gpu")
    poller = Poller(h)
    poller.start()
    time.sleep(0.5)
    ref0 = N.nvmlDeviceGetTotalEnergyConsumption(h)
    meter.start()
    cpu0 = meter.sampler_cpu_seconds() or 0.0
    spans = run_load(meter, a, b)
    cpu1 = meter.sampler_cpu_seconds() or 0.0
    run = meter.stop()
    ref1 = N.nvmlDeviceGetTotalEnergyConsumption(h)
    time.sleep(0.3)
    poller.stop_flag.set()
    poller.join()

    name = gpu.info.name
    ref_J = (ref1 - ref0) / 1000
    meter_J = run.source(name).energy_J
    start, end = meter.start_time, meter.end_time

    def grid_sum(width: float) -> tuple[float, int]:
        edges = np.arange(start, end, width)
        edges = np.append(edges, end)
        return sum(meter.energy(x, y).source(name).energy_J for x, y in zip(edges, edges[1:])), len(edges) - 1

    sum50, n50 = grid_sum(0.05)
    sum500, n500 = grid_sum(0.5)

    def window_power(kind: str) -> float:
        return statistics.mean(meter.energy(s, e).source(name).mean_power_W for k, s, e in spans if k == kind)

    (_, b0, b1), = [sp for sp in spans if sp[0] == "busy"]
    busy_rows = [("steady 4 s busy phase: EnergyMeter", f"{meter.energy(b0, b1).source(name).energy_J:.1f} J", ""),
                 ("steady 4 s busy phase: 1 s averaged power", f"{poller.integrate(b0, b1, 1):.1f} J", ""),
                 ("3 s idle after it: EnergyMeter", f"{meter.energy(b1, b1 + 3).source(name).energy_J:.1f} J", ""),
                 ("3 s idle after it: 1 s averaged power", f"{poller.integrate(b1, b1 + 3, 1):.1f} J", "")]
    avg_J = poller.integrate(start, end, 1)
    inst_J = poller.integrate(start, end, 2)
    sampler_cpu = (cpu1 - cpu0) / run.duration_s * 100
    rows = [
        ("GPU energy, reference (script's own counter reads)", f"{ref_J:.1f} J", ""),
        ("GPU energy, EnergyMeter", f"{meter_J:.1f} J", f"{(meter_J / ref_J - 1) * 100:+.2f} %"),
        (f"sum of {n50} consecutive 50 ms windows", f"{sum50:.1f} J", f"{(sum50 / meter_J - 1) * 100:+.4f} %"),
        (f"sum of {n500} consecutive 500 ms windows", f"{sum500:.1f} J", f"{(sum500 / meter_J - 1) * 100:+.4f} %"),
        ("integrating 1 s averaged power (10 Hz poll)", f"{avg_J:.1f} J", f"{(avg_J / ref_J - 1) * 100:+.2f} %"),
        ("integrating instant power field (10 Hz poll)", f"{inst_J:.1f} J", f"{(inst_J / ref_J - 1) * 100:+.2f} %"),
        ("steady busy / idle phases, mean power", f"{window_power('busy'):.0f} / {window_power('idle'):.0f} W", ""),
        ("50 ms busy / idle windows, mean power", f"{window_power('pulse50-busy'):.0f} / {window_power('pulse50-idle'):.0f} W", ""),
        ("250 ms busy / idle windows, mean power", f"{window_power('pulse250-busy'):.0f} / {window_power('pulse250-idle'):.0f} W", ""),
        *busy_rows,
        ("sampler thread CPU (% of one core)", f"{sampler_cpu:.2f} %", ""),
    ]
    details = {
        "machine": machine_facts(), "date": time.strftime("%Y-%m-%d"), "run": run.as_dict(),
        "findings": [f.as_dict() for f in meter.findings], "rows": rows, "spans": spans,
        "events": meter.event_lines(),
    }
    (OUT / "meter_accuracy.json").write_text(json.dumps(details, indent=1, default=str))
    meter.export_trace(OUT / "meter_trace.parquet")
    print(run.table())
    print()
    w = max(len(r[0]) for r in rows)
    for label, value, delta in rows:
        print(f"{label.ljust(w)}  {value:>16}  {delta}")


if __name__ == "__main__":
    main()
