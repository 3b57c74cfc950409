"""Apple silicon through ``powermetrics``: a recorded-format plist stream and a stand-in process.

tests/data/powermetrics_m2_macos14.plist is a four-sample stream in the format of
``powermetrics --samplers cpu_power,gpu_power,ane_power -f plist -i 1000`` on macOS 14 (M2, Mac14,2):
NUL-separated plists with ``elapsed_ns`` and, under ``processor``, ``cpu_energy``/``gpu_energy``/
``ane_energy`` (mJ per interval) and ``*_power`` (mW), plus a ``gpu`` dict. Its keys and units follow
public recordings and parsers: asitop (tlkh/asitop asitop/parsers.py: energies in mJ per interval,
``clusters``, ``gpu.freq_hz``/``idle_ratio``), the NUL separation and macOS 13+ ``*_power`` keys in
public powermetrics readers (e.g. the fixtures of github.com/BinSquare/powermetrics-go), and
``man powermetrics`` (``-f plist``, ``-i``; must be run as root). The values are typical of an idle
then loaded M2, not one machine's capture.
"""
import json
import math
import sys
import time
from pathlib import Path

import pytest

from green_mlops import cli
from green_mlops.meter import EnergyMeter
from green_mlops.meter import apple as apple_mod
from green_mlops.meter.apple import METHOD, Powermetrics, discover_apple, parse_document
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import SourceError, Tick

DATA = Path(__file__).parent / "data" / "powermetrics_m2_macos14.plist"
FAKE = [sys.executable, str(Path(__file__).parent / "fake_powermetrics.py")]
CPU_MJ, GPU_MJ, ANE_MJ = (412 + 6983 + 7251 + 5102), (9 + 4120 + 4307 + 2988), (1208 + 1194)


def test_parse_recorded_documents():
    docs = [d for d in DATA.read_bytes().split(b"\0") if d.strip()]
    assert len(docs) == 4
    first = parse_document(docs[0])
    assert first["cpu"] == pytest.approx((0.412, 0.412 / 1.003125), rel=1e-3)
    assert parse_document(docs[2])["ane"][0] == pytest.approx(1.208)


def test_older_macos_without_power_keys():
    doc = b"""<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>
    <key>elapsed_ns</key><integer>500000000</integer><key>processor</key><dict>
    <key>cpu_energy</key><integer>1500</integer><key>gpu_energy</key><integer>250</integer>
    <key>ane_energy</key><integer>0</integer><key>dram_energy</key><integer>80</integer>
    <key>package_energy</key><integer>1830</integer></dict></dict></plist>"""
    got = parse_document(doc)
    assert got["cpu"] == pytest.approx((1.5, 3.0)) and got["gpu"] == pytest.approx((0.25, 0.5))


def test_stream_split_anywhere_sums_to_the_recorded_energy():
    reader = Powermetrics(None)
    parts = {p: apple_mod.AppleSiliconPart(reader, p, d, 1000) for p, d, _, _ in apple_mod.PARTS}
    raw = DATA.read_bytes()
    for i in range(0, len(raw), 777):  # pipes deliver arbitrary chunks
        reader.feed(raw[i:i + 777])
    got = {p: s.read(Tick(t=1.0, full=True)) for p, s in parts.items()}
    assert got["cpu"].energy_J == pytest.approx(CPU_MJ / 1e3)
    assert got["gpu"].energy_J == pytest.approx(GPU_MJ / 1e3)
    assert got["ane"].energy_J == pytest.approx(ANE_MJ / 1e3)
    assert got["cpu"].power_W == pytest.approx(5.102 / 1.002310458, rel=1e-3)
    assert parts["cpu"].read(Tick(t=1.1, full=True)).energy_J is None  # nothing new since
    reader.feed(b"<plist>broken\0")
    parts["cpu"].read(Tick(t=1.2, full=True))
    assert any("unreadable" in w for w in parts["cpu"].warnings)


def test_linux_and_intel_mac():
    assert discover_apple(Settings(), system="Linux").findings == []
    (f,) = discover_apple(Settings(), system="Darwin", machine="x86_64").findings
    assert f.status == "absent" and "Intel Mac" in f.reason


def test_without_root_says_how(monkeypatch):
    monkeypatch.setattr(apple_mod.os, "geteuid", lambda: 501)
    monkeypatch.setattr(apple_mod.shutil, "which", lambda name: None)
    found = discover_apple(Settings(), system="Darwin", machine="arm64")
    assert found.sources == []
    assert {f.component for f in found.findings} == {"cpu", "gpu"}
    assert all("sudo green-mlops" in f.reason and "sudoers" in f.reason for f in found.findings)


def test_meter_window_matches_the_driven_power():
    found = discover_apple(Settings(), command=[*FAKE, "50", "5000", "3000", "1000"], system="Darwin",
                           machine="arm64")
    assert [s.info.name for s in found.sources] == ["cpu", "gpu", "ane"]
    with EnergyMeter(interval=0.02, sources=found.sources) as meter:
        time.sleep(0.6)  # the process starts and sends its first documents
        t0 = meter.now()
        time.sleep(0.5)
        t1 = meter.now()
    res = meter.energy(t0, t1)
    assert res.source("cpu").energy_J == pytest.approx(5.0 * (t1 - t0), rel=0.1)
    assert res.source("gpu").energy_J == pytest.approx(3.0 * (t1 - t0), rel=0.1)
    assert res.total_J == pytest.approx(9.0 * (t1 - t0), rel=0.1)
    assert found.sources[0].reader._proc is None  # stopped with the meter


def test_refusal_at_run_time_is_a_failed_read(monkeypatch):
    monkeypatch.setenv("FAKE_POWERMETRICS_DENY", "1")
    found = discover_apple(Settings(), command=[*FAKE, "50", "1", "1", "1"], system="Darwin", machine="arm64")
    cpu = found.sources[0]
    cpu.read(Tick(t=0.0, full=True))
    deadline = time.monotonic() + 10
    while cpu.reader.error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(SourceError, match="superuser"):
        cpu.read(Tick(t=1.0, full=True))
    assert math.isnan(cpu.reader.power["cpu"])


def test_hardware_shows_cpu_gpu_ane(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(apple_mod.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(apple_mod.platform, "machine", lambda: "arm64")
    monkeypatch.setattr(apple_mod, "_command", lambda ms, euid: ([*FAKE, "50", "1", "1", "1"], "running as root"))
    monkeypatch.setenv("GREEN_MLOPS_POWERCAP_ROOT", str(tmp_path / "none"))
    assert cli.main(["hardware", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {s["name"]: s for s in data["sources"] if s["method"] == METHOD}
    assert set(names) == {"cpu", "gpu", "ane"} and names["ane"]["domain"] == "gpu"
    assert not any(s["domain"] == "cpu" and s["provenance"] == "estimated" for s in data["sources"])
