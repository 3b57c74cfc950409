"""NVIDIA Jetson INA3221 rails against fake sysfs trees (``GREEN_MLOPS_SYSFS_ROOT``).

The trees copy the layouts and names of real boards as documented and recorded in public sources:
- hwmon ``ina3221`` (JetPack 5+, Orin): NVIDIA Jetson Linux Developer Guide r35, "Platform Power and
  Performance" (``/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon*/in{N}_label``, ``in{N}_input`` mV,
  ``curr{N}_input`` mA); AGX Orin rails VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 on 0x40 and
  VDDQ_VDD2_1V8AO on 0x41 with NC channels; Orin Nano rails VDD_IN, VDD_CPU_GPU_CV, VDD_SOC.
- iio ``ina3221x`` (JetPack 4, Xavier): L4T r32 Developer Guide "Power Management" (``rail_name_{N}``,
  ``in_power{N}_input`` mW); AGX Xavier rails GPU, CPU, SOC on 0x40 and CV, VDDRQ, SYS5V on 0x41.
- Zeus's Jetson reader (ml-energy/zeus zeus/device/soc/jetson.py) reads the same two layouts.
- Device-tree ``compatible`` strings of the AGX Orin dev kit (``nvidia,p3737-0000+p3701-0000``,
  ``nvidia,tegra234``).
"""
import json
import time
from pathlib import Path

import pytest

from green_mlops import cli
from green_mlops.meter import EnergyMeter, discover
from green_mlops.meter.jetson import METHOD, classify, discover_jetson
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Tick


def compatible(root: Path, text: bytes) -> None:
    d = root / "firmware" / "devicetree" / "base"
    d.mkdir(parents=True)
    (d / "compatible").write_bytes(text)


def hwmon(root: Path, addr: str, hw: str, channels: list[tuple[str, int, int]]) -> Path:
    d = root / "bus" / "i2c" / "drivers" / "ina3221" / addr / "hwmon" / hw
    d.mkdir(parents=True)
    (d / "name").write_text("ina3221\n")
    for n, (label, mv, ma) in enumerate(channels, start=1):
        (d / f"in{n}_label").write_text(label + "\n")
        (d / f"in{n}_input").write_text(f"{mv}\n")
        (d / f"curr{n}_input").write_text(f"{ma}\n")
    return d


def agx_orin(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    compatible(root, b"nvidia,p3737-0000+p3701-0000\0nvidia,p3701-0000\0nvidia,tegra234\0")
    hwmon(root, "1-0040", "hwmon3", [("VDD_GPU_SOC", 5008, 800), ("VDD_CPU_CV", 5016, 160),
                                     ("VIN_SYS_5V0", 5000, 784)])
    hwmon(root, "1-0041", "hwmon4", [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 5000, 100), ("NC", 0, 0)])
    return root


def put(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_classify_real_rail_names():
    assert classify("VDD_GPU_SOC") == ("gpu", ())
    assert classify("VDD_CPU_GPU_CV") == ("gpu", ("cpu",))
    assert classify("VDD_CPU_CV") == ("cpu", ()) and classify("CPU") == ("cpu", ())
    assert classify("VDDQ_VDD2_1V8AO") == ("dram", ()) and classify("VDDRQ") == ("dram", ())
    for total in ("VIN_SYS_5V0", "VDD_IN", "POM_5V_IN", "SYS5V"):
        assert classify(total) == (None, ())
    assert classify("VDD_SOC") == (None, ()) and classify("CV") == (None, ())


def test_agx_orin_rails_and_findings(tmp_path):
    root = agx_orin(tmp_path)
    found = discover_jetson(Settings(sysfs_root=str(root)))
    assert [(s.info.name, s.info.domain) for s in found.sources] == [
        ("VDD_GPU_SOC", "gpu"), ("VDD_CPU_CV", "cpu"), ("VDDQ_VDD2_1V8AO", "dram")]
    assert all(s.info.method == METHOD and s.info.provenance == "measured" for s in found.sources)
    assert "integrated" in found.sources[0].info.detail
    status = {f.component: f for f in found.findings}
    assert status["VIN_SYS_5V0"].status == "absent" and "count them twice" in status["VIN_SYS_5V0"].reason
    assert "NC" not in status

    assert found.sources[0].read(Tick(t=0.0, full=True)).power_W == pytest.approx(5.008 * 0.8)


def test_xavier_iio_layout(tmp_path):
    root = tmp_path / "sys"
    compatible(root, b"nvidia,p2972-0000\0nvidia,tegra194\0")
    for addr, rails in (("1-0040", [("GPU", 1540), ("CPU", 770), ("SOC", 1155)]),
                        ("1-0041", [("CV", 0), ("VDDRQ", 308), ("SYS5V", 2128)])):
        d = root / "bus" / "i2c" / "drivers" / "ina3221x" / addr / "iio:device0"
        d.mkdir(parents=True)
        for n, (name, mw) in enumerate(rails):
            (d / f"rail_name_{n}").write_text(name + "\n")
            (d / f"in_power{n}_input").write_text(f"{mw}\n")
    found = discover_jetson(Settings(sysfs_root=str(root)))
    assert [s.info.name for s in found.sources] == ["GPU", "CPU", "VDDRQ"]

    assert found.sources[0].read(Tick(t=0.0, full=True)).power_W == pytest.approx(1.54)


def test_orin_nano_combined_rail_covers_cpu(tmp_path):
    root = tmp_path / "sys"
    compatible(root, b"nvidia,p3768-0000+p3767-0005\0nvidia,tegra234\0")
    hwmon(root, "1-0040", "hwmon1", [("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300), ("VDD_SOC", 5000, 250)])
    found = discover(Settings(sysfs_root=str(root), powercap_root=str(tmp_path / "none")), gpu=False)
    names = [s.info.name for s in found.sources]
    assert names[0] == "VDD_CPU_GPU_CV" and found.sources[0].covers == ("cpu",)
    assert not any(s.info.domain == "cpu" for s in found.sources)  # no CPU estimate beside the rail
    status = {f.component: f.status for f in found.findings}
    assert status["cpu"] == "covered" and status["VDD_SOC"] == "absent"


def test_not_a_jetson_adds_nothing(tmp_path):
    assert discover_jetson(Settings(sysfs_root=str(tmp_path))).findings == []
    compatible(tmp_path, b"nvidia,tegra234\0")
    (f,) = discover_jetson(Settings(sysfs_root=str(tmp_path))).findings
    assert f.status == "absent" and "INA3221" in f.reason


def test_window_energy_is_the_driven_power(tmp_path):
    root = agx_orin(tmp_path)
    found = discover_jetson(Settings(sysfs_root=str(root)))
    gpu = found.sources[0]
    volt, curr = gpu.rail.files
    with EnergyMeter(interval=0.02, sources=[gpu]) as meter:
        t0 = meter.now()
        time.sleep(0.2)
        t1 = meter.now()
        before = meter.energy(t0, t1).total_J  # ticks at t1, before the load changes
        put(curr, "2000\n")  # 5.008 V × 2 A
        time.sleep(0.1)
        t2 = meter.now()
        time.sleep(0.2)
        t3 = meter.now()
    assert before == meter.energy(t0, t1).total_J == pytest.approx(5.008 * 0.8 * (t1 - t0), rel=1e-6)
    assert meter.energy(t2, t3).total_J == pytest.approx(5.008 * 2.0 * (t3 - t2), rel=1e-6)


def test_hardware_shows_the_rails(tmp_path, monkeypatch, capsys):
    root = agx_orin(tmp_path)
    monkeypatch.setenv("GREEN_MLOPS_SYSFS_ROOT", str(root))
    monkeypatch.setenv("GREEN_MLOPS_POWERCAP_ROOT", str(tmp_path / "none"))
    assert cli.main(["hardware", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rails = {s["name"]: s for s in data["sources"] if s["method"] == METHOD}
    assert set(rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VDDQ_VDD2_1V8AO"}
    assert not any(s["provenance"] == "estimated" for s in data["sources"])
    assert cli.main(["hardware"]) == 0
    out = capsys.readouterr().out
    assert "VDD_GPU_SOC" in out and "ina3221-power-integrated" in out and "VIN_SYS_5V0" in out
