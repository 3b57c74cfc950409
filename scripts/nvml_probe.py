"""Probe how NVML power and energy readings behave on this GPU: call cost and update cadence.

Why: the meter's design (counter for energy, instantaneous field for curves) rests on these
numbers; run it on a new GPU model before trusting sub-100 ms windows. Writes details to $OUT.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import time

import pynvml as N

OUT = os.environ.get("OUT", "/tmp/nvml_probe")
os.makedirs(OUT, exist_ok=True)


def load_pattern(t0: float, plan: list[tuple[float, float, bool]], q) -> None:
    """Run GPU matmuls following plan [(start, end, busy)], report the busy intervals actually run."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    q.put("ready")
    intervals = []
    for start, end, busy in plan:
        while time.monotonic() < t0 + start:
            pass
        if not busy:
            continue
        s = time.monotonic()
        while time.monotonic() < t0 + end - 0.0015:
            a @ b
            torch.cuda.synchronize()
        intervals.append((s - t0, time.monotonic() - t0))
    q.put(intervals)


def timeit(fn, n: int) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w0) / n * 1e6, (time.thread_time() - c0) / n * 1e6


def main() -> None:
    info = {}
    info["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    info["nproc"] = os.cpu_count()
    info["powercap"] = os.path.exists("/sys/class/powercap")
    try:
        info["dmidecode"] = subprocess.run(["dmidecode", "-t", "memory"], capture_output=True, text=True, timeout=10).stdout[:3000]
    except Exception as e:
        info["dmidecode"] = repr(e)
    N.nvmlInit()
    h = N.nvmlDeviceGetHandleByIndex(0)
    info["name"] = N.nvmlDeviceGetName(h)
    info["driver"] = N.nvmlSystemGetDriverVersion()
    info["pynvml"] = getattr(N, "__version__", "?")
    info["power_limit_mW"] = N.nvmlDeviceGetEnforcedPowerLimit(h)
    info["fi_names"] = {k: getattr(N, k) for k in dir(N) if k.startswith("NVML_FI_DEV_POWER") or "ENERGY" in k}
    FI = N.NVML_FI_DEV_POWER_INSTANT
    calls = {
        "field_instant": lambda: N.nvmlDeviceGetFieldValues(h, [FI]),
        "power_usage": lambda: N.nvmlDeviceGetPowerUsage(h),
        "energy_counter": lambda: N.nvmlDeviceGetTotalEnergyConsumption(h),
        "utilization": lambda: N.nvmlDeviceGetUtilizationRates(h),
        "memory_info": lambda: N.nvmlDeviceGetMemoryInfo(h),
        "temperature": lambda: N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU),
    }
    cost = {}
    for k, fn in calls.items():
        n = 50 if k == "energy_counter" else 500
        cost[k] = timeit(fn, n)
    info["cost_us_wall_cpu"] = cost
    print("call cost (us wall, us cpu):", json.dumps(cost))

    # Load plan: 1 s idle, 2 s busy, 1.5 s idle, 3 s of 50/50, 1.5 s idle
    plan = [(0, 1, False), (1, 3, True), (3, 4.5, False)]
    t = 4.5
    for _ in range(30):
        plan.append((t, t + 0.05, True))
        plan.append((t + 0.05, t + 0.1, False))
        t += 0.1
    plan.append((t, t + 1.5, False))
    total = t + 1.5
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = time.monotonic() + 6.0
    p = ctx.Process(target=load_pattern, args=(t0, plan, q))
    p.start()
    q.get()
    while time.monotonic() < t0:
        pass
    rows = []
    e_prev = None
    k = 0
    buf, buf_cost, buf_lag, last_ts = [], [], [], 0
    while time.monotonic() < t0 + total:
        tt = time.monotonic() - t0
        fi = N.nvmlDeviceGetFieldValues(h, [FI])[0]
        pu = N.nvmlDeviceGetPowerUsage(h)
        if k % 10 == 0:
            e_prev = N.nvmlDeviceGetTotalEnergyConsumption(h)
            te = time.monotonic() - t0
        rows.append((tt, fi.value.uiVal, fi.timestamp, pu, e_prev, te))
        if k % 50 == 0:
            c0 = time.perf_counter()
            try:
                _, got = N.nvmlDeviceGetSamples(h, N.NVML_TOTAL_POWER_SAMPLES, last_ts)
            except N.NVMLError:
                got = []
            buf_cost.append((time.perf_counter() - c0) * 1e6)
            now_wall = time.time()
            for smp in got:
                buf.append((smp.timeStamp, smp.sampleValue.uiVal))
            if got:
                last_ts = max(smp.timeStamp for smp in got)
                buf_lag.append(now_wall - last_ts / 1e6)
        k += 1
        time.sleep(0.001)
    intervals = q.get()
    p.join()
    wall_minus_mono = time.time() - time.monotonic()
    bsel = [((ts / 1e6 - wall_minus_mono) - t0, v / 1000) for ts, v in buf]
    with open(f"{OUT}/buffer_samples.csv", "w") as f:
        f.write("t,W\n" + "".join(f"{a},{b}\n" for a, b in bsel))
    with open(f"{OUT}/probe_series.csv", "w") as f:
        f.write("t,instant_mW,fi_timestamp_us,avg_mW,energy_mJ,energy_t\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    info["busy_intervals"] = intervals

    def changes(col):
        ts, last = [], None
        for r in rows:
            if r[col] != last:
                ts.append(r[0])
                last = r[col]
        d = [b - a for a, b in zip(ts, ts[1:])]
        return statistics.median(d) if d else None, len(ts)

    upd = {"instant": changes(1), "fi_timestamp": changes(2), "avg": changes(3), "energy": changes(4)}
    info["update_median_s_and_count"] = upd
    print("update cadence (median s between changes, n changes):", upd)
    try:
        _, samples = N.nvmlDeviceGetSamples(h, N.NVML_TOTAL_POWER_SAMPLES, 0)
        stamps = [s.timeStamp for s in samples]
        gaps = [(b - a) / 1000 for a, b in zip(stamps, stamps[1:])]
        info["power_samples_buffer"] = {"n": len(stamps), "median_gap_ms": statistics.median(gaps) if gaps else None}
    except Exception as e:
        info["power_samples_buffer"] = repr(e)
    print("nvmlDeviceGetSamples(TOTAL_POWER):", info["power_samples_buffer"])

    def in_busy(t):
        return any(a <= t < b for a, b in intervals)

    busy = [r[1] / 1000 for r in rows if 4.5 <= r[0] < t and in_busy(r[0])]
    idle = [r[1] / 1000 for r in rows if 4.5 <= r[0] < t and not in_busy(r[0])]
    info["pattern_instant_mean_W"] = (statistics.mean(busy), statistics.mean(idle))
    print("instant power during 50ms busy vs idle halves (W):", info["pattern_instant_mean_W"])
    bb = [v for tt, v in bsel if 4.5 <= tt < t and in_busy(tt)]
    bi = [v for tt, v in bsel if 4.5 <= tt < t and not in_busy(tt)]
    gaps = sorted(b[0] - a[0] for a, b in zip(bsel, bsel[1:]))
    info["buffer"] = {"n": len(bsel), "cost_us": buf_cost[:5], "median_cost_us": statistics.median(buf_cost),
                      "lag_s": buf_lag[:10], "gap_ms_median": gaps[len(gaps) // 2] * 1000 if gaps else None,
                      "busy_idle_W": (statistics.mean(bb) if bb else None, statistics.mean(bi) if bi else None)}
    print("sample buffer:", info["buffer"])
    for a, b, name in [(0.2, 0.9, "idle0"), (1.5, 2.9, "busy"), (3.6, 4.4, "idle1"), (t + 0.5, total, "idle2")]:
        sel = [v for tt, v in bsel if a <= tt < b]
        print(f"buffer {name}: {statistics.mean(sel) if sel else float('nan'):.1f} W ({len(sel)} samples)")
    # coarse print of the series: steady busy / idle
    for a, b, name in [(0.2, 0.9, "idle0"), (1.5, 2.9, "busy"), (3.6, 4.4, "idle1"), (4.5, t, "pattern"), (t + 0.5, total, "idle2")]:
        sel = [r for r in rows if a <= r[0] < b]
        print(f"{name:8s} instant {statistics.mean(r[1] for r in sel)/1000:7.1f} W  avg {statistics.mean(r[3] for r in sel)/1000:7.1f} W")
    json.dump(info, open(f"{OUT}/probe_info.json", "w"), indent=1, default=str)
    print(json.dumps({k: v for k, v in info.items() if k != "dmidecode"}, default=str)[:3000])
    print("dmidecode:", info["dmidecode"][:800])


if __name__ == "__main__":
    main()
