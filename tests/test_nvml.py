"""NVML GPU source against a fake driver at the pynvml boundary."""
import time

import pynvml
import pytest

from green_mlops.meter.nvml import (
    METHOD_AVERAGE,
    METHOD_COUNTER,
    METHOD_INSTANT,
    METHOD_SAMPLES,
    discover_nvml,
    visible_gpu_selectors,
)
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import SourceError, Tick
from tests.fake_nvml import FakeGpu, install


def test_prefers_counter_with_sample_buffer_curve(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 300.0)])
    found = discover_nvml(Settings(), env={})
    (gpu,) = found.sources
    assert gpu.info.name == "gpu0" and gpu.info.domain == "gpu" and gpu.info.provenance == "measured"
    assert gpu.info.method == METHOD_COUNTER
    assert "20 ms power samples" in gpu.info.detail
    r = gpu.read(Tick(t=time.monotonic(), full=True))
    assert r.power_W == pytest.approx(300.0)
    assert r.energy_J == 0.0
    assert r.extras["gpu0.util_pct"] == 97 and r.extras["gpu0.temp_C"] == 55
    time.sleep(0.25)
    assert gpu.read(Tick(t=time.monotonic(), full=False)).energy_J is None
    r = gpu.read(Tick(t=time.monotonic(), full=True))
    assert r.energy_J == pytest.approx(60.0, abs=31)
    # the buffered 20 ms samples come back on the monotonic clock, newer ones only
    assert 10 <= len(r.curve) <= 16 and all(w == 300.0 for _, w in r.curve)
    assert all(abs(t - time.monotonic()) < 0.5 for t, _ in r.curve)
    assert [t for t, _ in r.curve] == sorted(t for t, _ in r.curve)


def test_instant_curve_without_sample_buffer(monkeypatch):
    install(monkeypatch, [FakeGpu(samples=False)])
    (gpu,) = discover_nvml(Settings(), env={}).sources
    assert gpu.info.method == METHOD_COUNTER and "NVML_FI_DEV_POWER_INSTANT" in gpu.info.detail
    assert gpu.read(Tick(t=time.monotonic(), full=True)).curve is None


def test_falls_back_to_samples_then_instant_then_average(monkeypatch):
    install(monkeypatch, [FakeGpu(counter=False), FakeGpu(uuid="GPU-bbbb", counter=False, samples=False),
                          FakeGpu(uuid="GPU-cccc", counter=False, samples=False, instant=False)])
    found = discover_nvml(Settings(), env={})
    assert [s.info.method for s in found.sources] == [METHOD_SAMPLES, METHOD_INSTANT, METHOD_AVERAGE]
    assert all("no energy counter" in s.info.detail for s in found.sources)
    assert "lags" in found.sources[2].info.detail
    assert all(s.info.provenance == "measured" for s in found.sources)


def test_cuda_visible_devices_by_index_and_uuid(monkeypatch):
    install(monkeypatch, [FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb"), FakeGpu(uuid="GPU-cccc")])
    picked = discover_nvml(Settings(), env={"CUDA_VISIBLE_DEVICES": "2,0"}).sources
    assert [(s.info.name, s.nvml_index) for s in picked] == [("gpu0", 2), ("gpu1", 0)]
    by_uuid = discover_nvml(Settings(), env={"CUDA_VISIBLE_DEVICES": "GPU-bbb"}).sources
    assert [s.nvml_index for s in by_uuid] == [1]
    hidden = discover_nvml(Settings(), env={"CUDA_VISIBLE_DEVICES": "-1"})
    assert hidden.sources == [] and "hides every GPU" in hidden.findings[0].reason
    assert visible_gpu_selectors({"CUDA_VISIBLE_DEVICES": "1,-1,2"}) == ["1"]
    assert visible_gpu_selectors({}) is None


def test_no_driver_is_explained(monkeypatch):
    install(monkeypatch, [], init_error=pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND))
    found = discover_nvml(Settings(), env={})
    assert found.sources == []
    (f,) = found.findings
    assert f.status == "absent" and "NVML unavailable" in f.reason


def test_read_failure_raises_source_error_and_counter_continues(monkeypatch):
    (g,) = install(monkeypatch, [FakeGpu(power=lambda t: 200.0)])
    gpu = discover_nvml(Settings(), env={}).sources[0]
    gpu.read(Tick(t=time.monotonic(), full=True))
    g.fail.add("instant")
    with pytest.raises(SourceError, match="NVML read failed"):
        gpu.read(Tick(t=time.monotonic(), full=True))
    time.sleep(0.3)
    g.fail.clear()
    e = gpu.read(Tick(t=time.monotonic(), full=True)).energy_J
    assert e == pytest.approx(60.0, abs=21)


def test_telemetry_failure_leaves_nan_not_error(monkeypatch):
    install(monkeypatch, [FakeGpu()])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates",
                        lambda h: (_ for _ in ()).throw(pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)))
    gpu = discover_nvml(Settings(), env={}).sources[0]
    r = gpu.read(Tick(t=time.monotonic(), full=True))
    assert r.power_W == pytest.approx(100.0)
    assert r.extras["gpu0.util_pct"] != r.extras["gpu0.util_pct"]  # NaN


def test_counter_reads_closer_than_one_update_are_not_anchors(monkeypatch):
    install(monkeypatch, [FakeGpu()])
    (gpu,) = discover_nvml(Settings(), env={}).sources
    t = time.monotonic()
    assert gpu.read(Tick(t=t, full=True)).energy_J == 0.0
    assert gpu.read(Tick(t=t + 0.01, full=True)).energy_J is None  # could not have moved yet
    assert gpu.read(Tick(t=t + 0.2, full=True)).energy_J is not None
    assert gpu.anchor_lag_s == pytest.approx(0.05)


def test_samples_every_second_and_the_counter_every_five_by_default(monkeypatch):
    (g,) = install(monkeypatch, [FakeGpu()])
    (gpu,) = discover_nvml(Settings(), env={}).sources
    assert gpu.counter_interval == 5.0 and gpu.sample_interval == 1.0
    assert "read every 5 s" in gpu.info.detail and "fetched every 1 s" in gpu.info.detail
    counter0, t0 = g.counter_calls, 1000.0
    reads = [gpu.read(Tick(t=t0 + k * 0.125, full=False)) for k in range(24)]  # 3 s of 125 ms ticks
    assert [k for k, r in enumerate(reads) if r.curve is not None] == [0, 8, 16]  # every 1 s
    assert all(r.energy_J is None for r in reads) and g.counter_calls == counter0  # only full ticks read it
    full = gpu.read(Tick(t=t0 + 3.1, full=True))  # a counter read brings the samples up to it
    assert full.energy_J is not None and full.curve is not None and g.counter_calls == counter0 + 1
    assert not gpu.warnings


def test_samples_fetched_further_apart_than_the_buffer_holds_are_reported(monkeypatch):
    install(monkeypatch, [FakeGpu()])
    (gpu,) = discover_nvml(Settings(gpu_sample_interval=3.0), env={}).sources
    gpu.read(Tick(t=1000.0, full=False))
    gpu.read(Tick(t=1002.9, full=False))  # not due yet
    assert not gpu.warnings
    gpu.read(Tick(t=1003.0, full=False))
    (note,) = gpu.warnings
    assert "3.0 s apart" in note and "some were lost" in note


def test_a_counter_interval_set_by_the_user_is_kept(monkeypatch):
    install(monkeypatch, [FakeGpu(), FakeGpu(uuid="GPU-bbbb", samples=False)])
    assert [s.counter_interval for s in discover_nvml(Settings(), env={}).sources] == [5.0, 0.5]
    assert [s.counter_interval for s in discover_nvml(Settings(gpu_counter_interval=0.5), env={}).sources] == [0.5, 0.5]
