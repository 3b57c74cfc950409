"""EnergyMeter end to end: a fake GPU at the pynvml edge, the real sampler, real host estimates."""
import json
import math
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from green_mlops.meter import EnergyMeter, Settings, discover
from green_mlops.meter.nvml import discover_nvml
from green_mlops.meter.source import PowerSource, Reading, SourceInfo
from tests.fake_nvml import FakeGpu, install


def square_wave(t0: float, busy_W=600.0, idle_W=100.0, period=0.4):
    return lambda t: busy_W if ((t - t0) % period) < period / 2 else idle_W


@pytest.fixture()
def gpu(monkeypatch):
    t0 = time.monotonic()
    (g,) = install(monkeypatch, [FakeGpu(power=square_wave(t0))])
    return g


def gpu_meter(interval=0.02, settings=None, **kw):
    return EnergyMeter(interval, sources=discover_nvml(settings or Settings(), env={}).sources, **kw)


def test_whole_run_matches_counter_and_windows_add_up(gpu):
    meter = gpu_meter()
    e0 = gpu.energy_J(time.monotonic())
    with meter:
        for i in range(6):
            with meter.window(f"w{i}"):
                time.sleep(0.2)
    e1 = gpu.energy_J(time.monotonic())
    run = meter.result()
    assert run.final
    assert run.source("gpu0").energy_J == pytest.approx(e1 - e0, rel=0.05)
    # windows cover the run but for the gaps between them; all parts add up to the run exactly
    edges = [meter.start_time] + [x for w in meter.windows for x in (w.start, w.end)] + [meter.end_time]
    parts = [meter.energy(a, b).total_J for a, b in zip(edges, edges[1:])]
    assert sum(parts) == pytest.approx(run.total_J, rel=1e-9)
    assert all(p >= 0 for p in parts)
    # the counter is read at window edges at most every 0.5 s, not every tick
    assert gpu.counter_calls < run.duration_s / 0.5 + 6


def test_short_windows_follow_the_load(monkeypatch):
    """50 ms busy / 50 ms idle, sampled every 100 ms as on an H100: the 20 ms buffer resolves it."""
    t0 = time.monotonic()
    (gpu,) = install(monkeypatch, [FakeGpu(power=square_wave(t0, period=0.1))])
    meter = gpu_meter(interval=0.1)
    with meter:
        time.sleep(2.0)
    busy, idle = [], []
    k0 = int((meter.start_time - t0) / 0.05) + 2
    for k in range(k0, k0 + 30):
        a = t0 + k * 0.05
        r = meter.energy(a + 0.01, a + 0.04)
        (busy if k % 2 == 0 else idle).append(r.source("gpu0").mean_power_W)
    assert sum(busy) / len(busy) > 500 and sum(idle) / len(idle) < 200


def test_idle_baseline_and_net(gpu):
    meter = gpu_meter()
    idle = meter.measure_idle(0.8)
    assert idle.source("gpu0").mean_power_W == pytest.approx(350, rel=0.2)
    with meter:
        time.sleep(0.4)
    run = meter.result()
    s = run.source("gpu0")
    assert s.idle_power_W == pytest.approx(idle.source("gpu0").mean_power_W)
    assert s.net_J == pytest.approx(s.energy_J - s.idle_power_W * run.duration_s)
    assert "idle W" in run.table()


def test_counter_at_start_and_stop_only_by_default_and_no_sample_lost(monkeypatch):
    t0 = time.monotonic()
    (gpu,) = install(monkeypatch, [FakeGpu(power=square_wave(t0))])
    meter = gpu_meter(interval=0.1)  # the default settings: counter every 5 s, samples every 1 s
    counter0, samples0 = gpu.counter_calls, gpu.samples_calls
    e0 = gpu.energy_J(time.monotonic())
    with meter:
        time.sleep(2.6)
    e1 = gpu.energy_J(time.monotonic())
    run = meter.result()
    assert run.final and run.source("gpu0").energy_J == pytest.approx(e1 - e0, rel=0.05)
    assert gpu.counter_calls - counter0 == 2  # start and stop; every 0.5 s it would have been 7
    assert 3 <= gpu.samples_calls - samples0 <= 8  # the 2.4 s buffer: about every second, and at start and stop
    ct = np.array(meter.trace._curve_t["gpu0"])
    assert ct[0] <= meter.start_time + 0.03 and ct[-1] >= meter.end_time - 0.03  # within a 20 ms sample
    assert np.diff(ct).max() < 0.025  # every 20 ms sample of the run is there
    assert not [e for e in meter.events if e.kind == "warning"]


def test_window_edges_are_anchored_on_the_counter(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 200.0)])
    meter = gpu_meter(interval=0.1)
    with meter:
        time.sleep(0.7)
        with meter.window("w") as w:
            time.sleep(0.7)
        time.sleep(0.3)
    t = meter.trace.times()
    anchored = t[np.isfinite(np.array(meter.trace._anchor["gpu0"]))]
    assert np.abs(anchored - w.start).min() < 0.1 and np.abs(anchored - w.end).min() < 0.1
    assert len(anchored) == 4  # start, the window's two edges, stop


@pytest.mark.parametrize("buffered", [True, False])
def test_nvml_error_mid_run_is_recorded_and_energy_kept(monkeypatch, buffered):
    t0 = time.monotonic()
    (gpu,) = install(monkeypatch, [FakeGpu(power=square_wave(t0), samples=buffered)])
    meter = gpu_meter()
    e0 = gpu.energy_J(time.monotonic())
    with meter:
        time.sleep(0.3)
        gpu.fail.update({"instant", "energy", "samples"})
        time.sleep(0.3)
        gpu.fail.clear()
        time.sleep(0.3)
    e1 = gpu.energy_J(time.monotonic())
    run = meter.result()
    assert run.source("gpu0").energy_J == pytest.approx(e1 - e0, rel=0.05)
    kinds = [e.kind for e in meter.events]
    assert "read-failed" in kinds and "recovered" in kinds
    if buffered:  # the driver's 2.4 s sample buffer fills the outage in: nothing interpolated
        assert run.source("gpu0").gap_s == 0.0
    else:
        assert run.source("gpu0").gap_s > 0.2
        assert any("interpolated" in line for line in run.events)


class SlowSource(PowerSource):
    """A source whose reads take longer than the interval: the sampler falls behind."""

    def __init__(self):
        self.info = SourceInfo("slow", "cpu", "estimated", "test-constant")
        self.t0 = None

    def read(self, tick):
        time.sleep(0.03)
        self.t0 = self.t0 if self.t0 is not None else tick.t
        return Reading(power_W=50.0, energy_J=50.0 * (tick.t - self.t0))


def test_sampler_falling_behind_keeps_energy_and_says_so():
    meter = EnergyMeter(0.01, sources=[SlowSource()])
    with meter:
        time.sleep(0.5)
    run = meter.result()
    assert run.total_J == pytest.approx(50.0 * run.duration_s, rel=1e-6)
    assert any(e.kind == "late" for e in meter.events)


def test_bad_input_is_refused_clearly(gpu):
    for bad in (0, -1, "x", float("nan"), 1000):
        with pytest.raises(ValueError, match="interval"):
            gpu_meter(interval=bad)
    meter = gpu_meter()
    with pytest.raises(ValueError, match="0 or more seconds"):
        meter.measure_idle(-1)
    with pytest.raises(RuntimeError, match="start the meter"):
        with meter.window("too early"):
            pass
    with meter:
        pass
    with pytest.raises(RuntimeError, match="create a new one"):
        meter.measure_idle(0.1)
    with pytest.raises(ValueError, match="at least one power source"):
        EnergyMeter(sources=[])


def test_nested_windows(gpu):
    meter = gpu_meter()
    with meter:
        with meter.window("epoch 1") as outer:
            with meter.window("step 1") as inner:
                time.sleep(0.05)
            time.sleep(0.05)
    assert inner.parent is outer and inner.depth == 1 and inner.path == "epoch 1/step 1"
    assert 0 < inner.result().total_J < outer.result().total_J


def test_trace_export_parquet_and_csv(gpu, tmp_path):
    meter = gpu_meter()
    with meter:
        time.sleep(0.3)
    pq_path = meter.export_trace(tmp_path / "trace.parquet")
    table = pq.read_table(pq_path)
    meta = json.loads(table.schema.metadata[b"green_mlops.sources"])
    assert meta["gpu0"]["method"] == "nvml-energy-counter" and meta["gpu0"]["provenance"] == "measured"
    df = table.to_pandas()
    assert {"time", "t_s", "gpu0.power_W", "gpu0.energy_J", "gpu0.util_pct", "host.cpu_util_pct"} <= set(df.columns)
    ticks = meter.trace.times()
    assert df["gpu0.energy_J"].iloc[-1] == pytest.approx(meter.energy(ticks[0], ticks[-1]).total_J, rel=1e-9)
    csv_path = meter.export_trace(tmp_path / "trace.csv")
    assert csv_path.read_text().startswith("# gpu0: gpu, measured, nvml-energy-counter")
    assert len(pd.read_csv(csv_path, comment="#")) == len(df)


def test_this_machine_estimates_cpu_and_dram_with_provenance():
    """Integration: on this CPU-only machine the meter reports estimated CPU and DRAM energy."""
    found = discover(Settings.from_env(), gpu=False)
    by_domain = {s.info.domain: s.info for s in found.sources}
    assert {"cpu", "dram"} <= set(by_domain)
    meter = EnergyMeter(0.05, sources=found.sources)
    with meter:
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            sum(i * i for i in range(1000))
    run = meter.result()
    for domain in ("cpu", "dram"):
        value = run.domain_J(domain)
        assert value is not None and value > 0 and math.isfinite(value)
    as_dict = run.as_dict()
    for d in ("cpu", "dram"):
        (method,) = as_dict["domains"][d]["methods"]
        assert method.startswith(by_domain[d].provenance + ":")
    assert run.domain_J("gpu") is None  # no GPU: no number, not a zero


def test_counter_reset_is_reported_and_energy_continues(gpu):
    real = gpu.energy_J
    gpu.energy_J = lambda t: 1e6 + real(t)  # a counter that has run since the driver loaded
    # energy from the last read before a reset to the reset is lost: read often here, so that is under 0.5 s
    meter = gpu_meter(settings=Settings(gpu_counter_interval=0.5))
    with meter:
        time.sleep(0.6)
        reset_at = time.monotonic()
        gpu.energy_J = lambda t: real(t) - real(reset_at)  # driver reload: the counter restarts at 0
        time.sleep(0.6)
    warnings = [e for e in meter.events if e.kind == "warning"]
    assert warnings and "treated as a reset" in warnings[0].message
    run = meter.result()
    assert run.source("gpu0").mean_power_W == pytest.approx(350, rel=0.25)
