"""AMD Instinct GPUs through a fake ``amdsmi`` module injected into ``sys.modules``.

The fake (tests/fake_amdsmi.py) follows AMD's AMD SMI Python API reference and the behaviours
recorded on MI300X, MI210 and MI250X nodes in Zeus pull request 203; see its header.
"""
import json
import sys
import time

import pytest

from green_mlops import cli
from green_mlops.meter import EnergyMeter
from green_mlops.meter.amd import METHOD_COUNTER, METHOD_POWER, discover_amd, visible_hip_indices
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Tick
from tests.fake_amdsmi import RESOLUTION_UJ, FakeAmdGpu, ManualClock, make_module, mi250x_node


@pytest.fixture
def inject(monkeypatch):
    def put(gpus, **kw):
        module = make_module(gpus, **kw)
        monkeypatch.setitem(sys.modules, "amdsmi", module)
        return module
    return put


def test_absent_amdsmi_is_a_finding_not_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "amdsmi", None)  # import amdsmi raises ImportError
    found = discover_amd(Settings(), env={})
    assert found.sources == []
    (f,) = found.findings
    assert (f.component, f.status, f.method) == ("gpu", "absent", "amdsmi") and "not installed" in f.reason


def test_init_failure_is_a_finding(inject):
    inject([FakeAmdGpu("AMD Instinct MI300X")], init_error=34)
    (f,) = discover_amd(Settings(), env={}).findings
    assert f.status == "absent" and "amdgpu driver" in f.reason


def test_mi300x_average_na_uses_current_power_and_counter(inject):
    clock = ManualClock()
    module = inject([FakeAmdGpu("AMD Instinct MI300X", 600.0, average=False, clock=clock)])
    found = discover_amd(Settings(), env={}, sleep=clock.advance, clock=clock)
    (gpu,) = found.sources
    assert gpu.info.name == "gpu0" and gpu.info.method == METHOD_COUNTER and gpu.info.provenance == "measured"
    assert gpu.power_field == "current_socket_power" and "average_socket_power reported as N/A" in gpu.info.detail
    assert found.findings[0].status == "measured"
    assert gpu.read(Tick(t=clock(), full=True)).energy_J == 0.0
    clock.advance(2.0)
    r = gpu.read(Tick(t=clock(), full=True))
    assert r.power_W == 600.0
    assert r.energy_J == pytest.approx(1200.0, abs=RESOLUTION_UJ * 1e-6)
    gpu.close()
    assert module.calls == ["init", "shut_down"]


def test_mi210_current_na_uses_average_power(inject):
    inject([FakeAmdGpu("AMD Instinct MI210", 250.0, current=False)])
    (gpu,) = discover_amd(Settings(), env={}).sources
    assert gpu.power_field == "average_socket_power" and "current_socket_power reported as N/A" in gpu.info.detail
    assert gpu.read(Tick(t=time.monotonic(), full=False)).power_W == 250.0


def test_counter_wrap_and_reset_are_counted_and_reported(inject):
    clock = ManualClock()
    start = 2**32 - int(100.0 / (RESOLUTION_UJ * 1e-6))  # 100 J before a 32-bit wrap
    fake = FakeAmdGpu("AMD Instinct MI300X", 300.0, start_ticks=start, bits=32, clock=clock)
    inject([fake])
    (gpu,) = discover_amd(Settings(), env={}, sleep=clock.advance, clock=clock).sources
    gpu.read(Tick(t=clock(), full=True))
    driven = 0.0
    for watts, seconds in ((300.0, 0.2), (500.0, 0.4), (100.0, 1.0)):  # 60 + 200 + 100 J: wraps at 100 J
        fake.set_power(watts)
        clock.advance(seconds)
        driven += watts * seconds
        energy = gpu.read(Tick(t=clock(), full=True)).energy_J
    assert energy == pytest.approx(driven, abs=3 * RESOLUTION_UJ * 1e-6)
    assert any("wrapped" in w for w in gpu.warnings)


@pytest.mark.parametrize("scale", [0.0, 1 / 15])
def test_implausible_counter_falls_back_to_socket_power(inject, scale):
    clock = ManualClock()
    inject([FakeAmdGpu("AMD Instinct MI210", 250.0, current=False, counter_scale=scale, clock=clock),
            FakeAmdGpu("AMD Instinct MI210", 250.0, current=False, hip_id=1, clock=clock)])
    found = discover_amd(Settings(), env={}, sleep=clock.advance, clock=clock)
    bad, good = found.sources
    assert bad.info.method == METHOD_POWER and "amdsmi issue #38" in bad.info.detail and bad.counter_interval == 0
    assert good.info.method == METHOD_COUNTER
    assert {f.component: f.method for f in found.findings} == {"gpu0": METHOD_POWER, "gpu1": METHOD_COUNTER}
    assert bad.read(Tick(t=clock(), full=True)).energy_J is None


def test_no_counter_integrates_socket_power(inject):
    inject([FakeAmdGpu("AMD Instinct MI210", 200.0, counter=False, current=False)])
    (gpu,) = discover_amd(Settings(), env={}).sources
    assert gpu.info.method == METHOD_POWER and "integrated" in gpu.info.detail


def test_old_api_power_key(inject):
    clock = ManualClock()
    inject([FakeAmdGpu("AMD Instinct MI250X", 400.0, clock=clock)], old_api=True)
    (gpu,) = discover_amd(Settings(), env={}, sleep=clock.advance, clock=clock).sources
    gpu.read(Tick(t=clock(), full=True))
    clock.advance(1.0)
    assert gpu.read(Tick(t=clock(), full=True)).energy_J == pytest.approx(400.0, abs=1e-4)


def test_mi250x_pairs_metered_once_through_even_die(inject):
    inject(mi250x_node())
    found = discover_amd(Settings(), env={})
    assert [s.info.name for s in found.sources] == ["gpu0", "gpu2", "gpu4", "gpu6"]
    assert "die pair 0+1" in found.sources[0].info.detail and "combined power" in found.sources[0].info.detail
    status = {f.component: f for f in found.findings}
    assert status["gpu1"].status == "covered" and "metered once as gpu0" in status["gpu1"].reason


def test_mi250x_odd_die_alone_explains_how_to_meter_it(inject):
    inject(mi250x_node())
    found = discover_amd(Settings(), env={"HIP_VISIBLE_DEVICES": "3"})
    assert found.sources == []
    (f,) = found.findings
    assert f.status == "absent" and "die 2" in f.reason and "HIP_VISIBLE_DEVICES hides" in f.reason


def test_visible_devices_hip_rocr_cuda():
    assert visible_hip_indices(4, {}) == ([0, 1, 2, 3], None)
    assert visible_hip_indices(4, {"HIP_VISIBLE_DEVICES": "2,0"}) == ([2, 0], "HIP_VISIBLE_DEVICES")
    assert visible_hip_indices(4, {"CUDA_VISIBLE_DEVICES": "1"}) == ([1], "CUDA_VISIBLE_DEVICES")
    # HIP indexes into what ROCR left visible
    assert visible_hip_indices(4, {"ROCR_VISIBLE_DEVICES": "1,3", "HIP_VISIBLE_DEVICES": "1"})[0] == [3]
    assert visible_hip_indices(4, {"HIP_VISIBLE_DEVICES": "-1"})[0] == []


def test_hip_order_follows_enumeration_info(inject):
    inject([FakeAmdGpu("AMD Instinct MI300X", 500.0, hip_id=1), FakeAmdGpu("AMD Instinct MI210", 100.0, hip_id=0)])
    found = discover_amd(Settings(), env={"HIP_VISIBLE_DEVICES": "1"})
    (gpu,) = found.sources
    assert gpu.gpu_name == "AMD Instinct MI300X" and gpu.info.name == "gpu0"
    assert not discover_amd(Settings(), env={"ROCR_VISIBLE_DEVICES": ""}).sources


def test_meter_window_matches_driven_energy(inject):
    fake = FakeAmdGpu("AMD Instinct MI300X", 400.0, average=False, start_ticks=2**32 - 2000, bits=32)
    inject([fake])
    (gpu,) = discover_amd(Settings(gpu_counter_interval=0.05), env={}).sources
    with EnergyMeter(interval=0.02, sources=[gpu]) as meter:
        t0 = meter.now()
        time.sleep(0.3)
        t1 = meter.now()
    got = meter.energy(t0, t1).total_J
    assert got == pytest.approx(400.0 * (t1 - t0), rel=0.05)


def test_hardware_shows_amd_gpus(inject, monkeypatch, capsys, tmp_path):
    import pynvml

    def no_nvidia_driver():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_nvidia_driver)
    monkeypatch.setenv("GREEN_MLOPS_POWERCAP_ROOT", str(tmp_path / "none"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    inject(mi250x_node())
    assert cli.main(["hardware", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in data["sources"] if s["domain"] == "gpu"] == ["gpu0", "gpu2", "gpu4", "gpu6"]
    status = {f["component"]: f["status"] for f in data["findings"]}
    assert status["gpu1"] == "covered" and status["gpu0"] == "measured"
    assert cli.main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "amdsmi-energy-counter" in out and "MI250X" in out
