"""Step attribution: marks on the training thread become per-step power and cumulative energy."""
import time

import pytest

from green_mlops.meter import EnergyMeter, Settings
from green_mlops.meter.dram_model import DramModel
from green_mlops.meter.nvml import discover_nvml
from green_mlops.run.stream import EnergyStream, metric_names
from tests.fake_nvml import FakeGpu, install


def test_steps_shorter_than_the_interval_get_their_share(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 400.0)])
    meter = EnergyMeter(0.1, sources=discover_nvml(Settings(), env={}).sources).start()
    got = []
    stream = EnergyStream(meter, got.extend, origin=meter.start_time, publish_interval=0.2).start()
    for step in range(1, 101):  # 100 steps of ~10 ms, ten per sampler tick
        time.sleep(0.01)
        stream.mark(step)
    meter.stop()
    stream.close()
    assert [s for s, _, _ in got] == list(range(1, 101))
    power = [m["power/gpu0_W"] for _, _, m in got]
    # the counter updates every 100 ms, so its anchors at start and stop are ±50 ms off: ±5 % over this 1 s run
    assert min(power) == pytest.approx(400.0, rel=0.05) and max(power) == pytest.approx(400.0, rel=0.05)
    cum = [m["energy/gpu_J"] for _, _, m in got]
    assert cum == sorted(cum)
    assert cum[-1] == pytest.approx(meter.energy(meter.start_time, stream._prev_t).total_J, abs=5e-4)  # 1 mJ
    assert set(got[0][2]) == set(metric_names(meter))


def test_every_n_steps_and_repeated_steps(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 100.0)])
    meter = EnergyMeter(0.05, sources=discover_nvml(Settings(), env={}).sources).start()
    got = []
    stream = EnergyStream(meter, got.extend, origin=meter.start_time, every_n_steps=3)
    for step in (1, 1, 2, 3, 3, 4, 5, 6, 7):  # gradient accumulation repeats a step
        time.sleep(0.02)
        stream.mark(step)
    meter.stop()
    stream.close()
    assert [s for s, _, _ in got] == [3, 6]
    with pytest.raises(ValueError, match="every_n_steps"):
        EnergyStream(meter, got.extend, every_n_steps=0)


def test_only_final_data_is_published_while_running(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 100.0)])
    meter = EnergyMeter(0.05, sources=discover_nvml(Settings(gpu_counter_interval=1.0), env={}).sources).start()
    got = []
    stream = EnergyStream(meter, got.extend, origin=meter.start_time)
    time.sleep(0.05)
    stream.mark(1)
    assert stream.publish() == 0  # the counter has not been read since: not final yet
    time.sleep(1.1)
    assert stream.publish() == 1
    meter.stop()
    stream.close()


def test_constant_power_is_logged_as_a_constant():
    # the DRAM model is a constant estimate: its per-step power must not carry float noise (1e-14 jitter)
    dram = DramModel(3.2, "dimm-cv2f-model", "constant for this test")
    meter = EnergyMeter(0.02, sources=[dram]).start()
    got = []
    stream = EnergyStream(meter, got.extend, origin=meter.start_time, publish_interval=0.1).start()
    for step in range(1, 41):
        time.sleep(0.007)
        stream.mark(step)
    meter.stop()
    stream.close()
    assert len(got) == 40
    assert {m["power/dram_W"] for _, _, m in got} == {3.2}
    assert all(round(m["energy/dram_J"], 3) == m["energy/dram_J"] for _, _, m in got)  # 1 mJ resolution
