"""RAPL powercap source against a fake powercap tree built from real files in tmp_path."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from green_mlops.meter import rapl
from green_mlops.meter.rapl import RaplZone, discover_rapl
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import SourceError, Tick

RANGE_UJ = 262_143_328_850  # a real Xeon's max_energy_range_uj


def zone(parent: Path, zone_id: str, name: str, energy_uj: int = 0, range_uj: int = RANGE_UJ) -> Path:
    """Write one powercap zone dir the way sysfs shows it."""
    d = parent / zone_id
    d.mkdir()
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return d


def set_energy(src: RaplZone, energy_uj: int) -> None:
    (src.path / "energy_uj").write_text(f"{energy_uj}\n")


def settings(root: Path) -> Settings:
    return Settings(powercap_root=str(root))


@pytest.fixture
def two_sockets(tmp_path: Path) -> Path:
    """Two packages, each with core, uncore and dram subzones; plus psys and mmio to be skipped.

    Like /sys/class/powercap, subzones appear inside their package and again (as links) at the top.
    """
    root = tmp_path / "powercap"
    root.mkdir()
    for n in (0, 1):
        pkg = zone(root, f"intel-rapl:{n}", f"package-{n}", 1_000_000 * (n + 1))
        zone(pkg, f"intel-rapl:{n}:0", "core", 5)
        zone(pkg, f"intel-rapl:{n}:1", "uncore", 5)
        zone(pkg, f"intel-rapl:{n}:2", "dram", 7_000_000)
        for m in (0, 1, 2):
            os.symlink(pkg / f"intel-rapl:{n}:{m}", root / f"intel-rapl:{n}:{m}")
    zone(root, "intel-rapl:2", "psys", 9)
    mmio = zone(root, "intel-rapl-mmio:0", "package-0", 9)
    zone(mmio, "intel-rapl-mmio:0:0", "dram", 9)
    return root


def by_name(root: Path) -> dict[str, RaplZone]:
    found = discover_rapl(settings(root))
    return {s.info.name: s for s in found.sources}  # type: ignore[misc]


def test_two_sockets_packages_and_dram_only(two_sockets: Path) -> None:
    found = discover_rapl(settings(two_sockets))
    names = [s.info.name for s in found.sources]
    assert names == ["cpu0", "cpu1", "dram0", "dram1"]
    infos = {s.info.name: s.info for s in found.sources}
    assert [infos[n].domain for n in names] == ["cpu", "cpu", "dram", "dram"]
    assert all(i.provenance == "measured" and i.method == "rapl" for i in infos.values())
    assert infos["cpu0"].detail == "powercap intel-rapl:0 (package-0)"
    assert infos["cpu1"].detail == "powercap intel-rapl:1 (package-1)"
    assert infos["dram1"].detail == "powercap intel-rapl:1:2 (dram)"
    assert all(s.counter_interval == 0 for s in found.sources)
    assert [(f.component, f.status, f.method) for f in found.findings] == [
        ("cpu0", "measured", "rapl"), ("cpu1", "measured", "rapl"),
        ("dram0", "measured", "rapl"), ("dram1", "measured", "rapl")]
    assert "intel-rapl:1:2" in found.findings[3].reason and "energy_uj" in found.findings[3].reason


def test_cumulative_energy_and_power(two_sockets: Path) -> None:
    cpu0 = by_name(two_sockets)["cpu0"]
    first = cpu0.read(Tick(t=10.0, full=True))
    assert first.energy_J == 0.0 and math.isnan(first.power_W)
    set_energy(cpu0, 1_000_000 + 200_000_000)  # +200 J
    r = cpu0.read(Tick(t=12.0, full=True))
    assert r.energy_J == pytest.approx(200.0) and r.power_W == pytest.approx(100.0)
    set_energy(cpu0, 1_000_000 + 500_000_000)  # +300 J
    r = cpu0.read(Tick(t=13.0, full=True))
    assert r.energy_J == pytest.approx(500.0) and r.power_W == pytest.approx(300.0)
    assert cpu0.extra_wraps == 0 and cpu0.warnings == []


def test_wrap_between_two_reads(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0", RANGE_UJ - 50_000_000)
    src = by_name(tmp_path)["cpu0"]
    src.read(Tick(t=0.0, full=True))
    set_energy(src, 30_000_000)  # 50 J to the wrap, then 30 J
    r = src.read(Tick(t=1.0, full=True))
    assert r.energy_J == pytest.approx(80.0) and r.power_W == pytest.approx(80.0)
    assert src.extra_wraps == 0


def test_late_sampler_missing_a_whole_wrap(tmp_path: Path) -> None:
    range_uj = 100_000_000  # a 100 J counter, so a stall of a few seconds hides a wrap
    zone(tmp_path, "intel-rapl:0", "package-0", 0, range_uj)
    src = by_name(tmp_path)["cpu0"]
    src.read(Tick(t=0.0, full=True))
    set_energy(src, 50_000_000)
    assert src.read(Tick(t=1.0, full=True)).power_W == pytest.approx(50.0)
    # 4 s at 52 W = 208 J: the modulo alone sees only 8 J.
    set_energy(src, 58_000_000)  # raw was at 50 J: 50 + 208 = 258 J wraps to 58 J
    r = src.read(Tick(t=5.0, full=True))
    assert src.extra_wraps == 2
    assert r.energy_J == pytest.approx(50.0 + 208.0)
    assert r.power_W == pytest.approx(52.0)
    assert len(src.warnings) == 1 and "2 extra wrap" in src.warnings[0]


def test_unreadable_energy_uj_explains_fix(two_sockets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rapl._read_int

    def denied(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl, "_read_int", denied)
    found = discover_rapl(settings(two_sockets))
    assert found.sources == []
    assert [(f.component, f.status) for f in found.findings] == [("cpu", "absent"), ("dram", "absent")]
    reason = found.findings[0].reason
    assert "intel-rapl:0 (package-0)" in reason and "intel-rapl:1 (package-1)" in reason
    assert "Linux 5.10" in reason and "CVE-2020-8694" in reason
    assert ("sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
            "/sys/class/powercap/intel-rapl:*/intel-rapl:*/energy_uj") in reason
    assert "/etc/udev/rules.d/99-green-mlops-rapl.rules" in reason
    assert 'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj"' in reason
    assert "estimate" in reason
    assert "intel-rapl:0:2 (dram)" in found.findings[1].reason


def test_broken_zone_is_absent_not_zero(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0")
    (pkg / "energy_uj").unlink()
    (pkg / "energy_uj").mkdir()  # reading it fails with IsADirectoryError, as root too
    found = discover_rapl(settings(tmp_path))
    assert found.sources == []
    assert found.findings[0].component == "cpu0" and found.findings[0].status == "absent"
    assert "intel-rapl:0" in found.findings[0].reason


def test_missing_root(tmp_path: Path) -> None:
    found = discover_rapl(settings(tmp_path / "nowhere"))
    assert found.sources == []
    assert [(f.component, f.status, f.method) for f in found.findings] == [
        ("cpu", "absent", "rapl"), ("dram", "absent", "rapl")]
    for f in found.findings:
        assert str(tmp_path / "nowhere") in f.reason and "GREEN_MLOPS_POWERCAP_ROOT" in f.reason
        assert "VM" in f.reason


def test_failed_read_mid_run_then_recovers(two_sockets: Path) -> None:
    dram1 = by_name(two_sockets)["dram1"]
    dram1.read(Tick(t=0.0, full=True))
    set_energy(dram1, 7_000_000 + 10_000_000)
    assert dram1.read(Tick(t=1.0, full=True)).energy_J == pytest.approx(10.0)
    (dram1.path / "energy_uj").unlink()
    with pytest.raises(SourceError, match="dram1.*energy_uj"):
        dram1.read(Tick(t=2.0, full=True))
    (dram1.path / "energy_uj").write_text("garbage\n")
    with pytest.raises(SourceError, match="dram1"):
        dram1.read(Tick(t=2.5, full=True))
    set_energy(dram1, 7_000_000 + 40_000_000)
    r = dram1.read(Tick(t=4.0, full=True))
    assert r.energy_J == pytest.approx(40.0)
    assert r.power_W == pytest.approx(10.0)  # 30 J over the 3 s since the last good read


def test_top_level_dram_zone(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "package-0")
    zone(tmp_path, "intel-rapl:1", "dram")
    zone(tmp_path, "intel-rapl:2", "psys")
    found = discover_rapl(settings(tmp_path))
    assert [(s.info.name, s.info.domain, s.info.detail) for s in found.sources] == [
        ("cpu0", "cpu", "powercap intel-rapl:0 (package-0)"),
        ("dram0", "dram", "powercap intel-rapl:1 (dram)")]
    assert all(f.status == "measured" for f in found.findings)


def test_no_dram_zone(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0")  # e.g. an AMD EPYC or a client CPU
    zone(pkg, "intel-rapl:0:0", "core")
    found = discover_rapl(settings(tmp_path))
    assert [s.info.name for s in found.sources] == ["cpu0"]
    dram = [f for f in found.findings if f.component == "dram"]
    assert len(dram) == 1 and dram[0].status == "absent" and dram[0].method == "rapl"
    assert dram[0].reason == "RAPL has no DRAM domain on this CPU (common on client CPUs and AMD)"


def test_empty_tree_says_so(tmp_path: Path) -> None:
    found = discover_rapl(settings(tmp_path))
    assert found.sources == []
    assert {f.component for f in found.findings} == {"cpu", "dram"}
    assert all(f.status == "absent" and "no intel-rapl" in f.reason for f in found.findings)


def test_meter_on_a_live_powercap_tree_with_wraps(tmp_path: Path) -> None:
    """End to end: a writer thread plays a 50 W package and a 5 W DRAM whose counters wrap every
    0.2 s; the meter found through GREEN_MLOPS_POWERCAP_ROOT reports 50 W and 5 W, measured."""
    import threading
    import time

    from green_mlops.meter import EnergyMeter, discover

    root = tmp_path / "powercap"
    root.mkdir()
    pkg = zone(root, "intel-rapl:0", "package-0", range_uj=10_000_000)
    dram = zone(pkg, "intel-rapl:0:2", "dram", range_uj=1_000_000)
    stop = threading.Event()
    t0 = time.monotonic()

    def put(path: Path, text: str) -> None:  # sysfs reads never see a half-written file: replace atomically
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def writer() -> None:
        while not stop.is_set():
            dt = time.monotonic() - t0
            put(pkg / "energy_uj", f"{int(50e6 * dt) % 10_000_000}\n")
            put(dram / "energy_uj", f"{int(5e6 * dt) % 1_000_000}\n")
            time.sleep(0.002)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        found = discover(Settings.from_env({"GREEN_MLOPS_POWERCAP_ROOT": str(root)}), gpu=False)
        assert {s.info.name: s.info.method for s in found.sources} == {"cpu0": "rapl", "dram0": "rapl"}
        meter = EnergyMeter(0.05, sources=found.sources)
        with meter:
            time.sleep(1.0)
    finally:
        stop.set()
        th.join()
    run = meter.result()
    assert run.source("cpu0").mean_power_W == pytest.approx(50.0, rel=0.05)
    assert run.source("dram0").mean_power_W == pytest.approx(5.0, rel=0.05)
    assert all(s.info.provenance == "measured" for s in run.sources)


def test_starved_sampler_adds_no_phantom_wraps_and_counts_a_real_stall(tmp_path: Path) -> None:
    """Issue 15, item 7: a two-socket tree with 50 J counters at 20 W, read by a sampler deliberately
    starved (reads 2 ms apart that catch a whole 1 J update, then gaps of 0.3–0.5 s, as on a loaded
    machine). One interval's power (here 500 W) once added phantom wraps (4,381 J read for 280 J
    written); the mean over seconds, bounded by the zone's limit, adds none. A real 3 s stall
    (60 J: one wrap) is counted exactly once, and the warning names real numbers."""
    root = tmp_path / "powercap"
    root.mkdir()
    range_uj = 50_000_000
    for n in (0, 1):
        z = zone(root, f"intel-rapl:{n}", f"package-{n}", 0, range_uj)
        (z / "constraint_0_max_power_uw").write_text("120000000\n")  # the package's stated maximum: 120 W
    zones = by_name(root)
    watts, written, t, true_uj = 20.0, 0.0, 0.0, 0
    for z in zones.values():
        z.read(Tick(t=0.0, full=True))
    # The starved pattern: each gap is followed by a read 2 ms later that sees a 1 J counter update.
    gaps = [0.3, 0.002, 0.5, 0.002, 0.4, 0.002] * 12 + [3.0] + [0.3, 0.002, 0.5, 0.002] * 3
    for gap in gaps:
        t += gap
        joules = 1.0 if gap == 0.002 else watts * gap - (1.0 if gap < 3 else 0.0)
        true_uj += int(joules * 1e6)
        written += joules
        for z in zones.values():
            set_energy(z, true_uj % range_uj)
            r = z.read(Tick(t=t, full=True))
    for name in ("cpu0", "cpu1"):
        z = zones[name]
        assert z.max_power_W == pytest.approx(120.0)
        assert z.extra_wraps == 1  # the 3 s stall (60 J through a 50 J counter), nothing else
        assert z._energy_J == pytest.approx(written, rel=1e-6)
        assert len(z.warnings) == 1
        assert "assumed 1 extra wrap" in z.warnings[0] and "3 s between reads" in z.warnings[0]
        assert "(50 J)" in z.warnings[0] and " 0 W" not in z.warnings[0] and "(0 J)" not in z.warnings[0]
    assert r.energy_J == pytest.approx(written, rel=1e-6)


def test_no_wrap_guessed_when_no_power_could_fill_a_range(tmp_path: Path) -> None:
    """A short interval after a wild one: at the zone's maximum the counter could not wrap, so no estimate."""
    zone(tmp_path, "intel-rapl:0", "package-0", 0, RANGE_UJ)
    src = by_name(tmp_path)["cpu0"]
    src.read(Tick(t=0.0, full=True))
    set_energy(src, 5_000_000)
    src.read(Tick(t=0.001, full=True))  # 5 kW for a millisecond
    set_energy(src, 6_000_000)
    src.read(Tick(t=5.0, full=True))
    assert src.extra_wraps == 0 and src.warnings == []
