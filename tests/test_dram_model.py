"""The DRAM models: dmidecode parsing, the paper's ½·C·V²·f per DIMM, and the per-GB fallback."""
import math
import os
import stat

import pytest

from green_mlops.meter.dram_model import (
    DIMM_CAPACITANCE_F,
    W_PER_GB,
    DimmInfo,
    DramModel,
    discover_dram_model,
    parse_dmidecode,
    read_dimms,
)
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Tick

# A two-socket server as dmidecode 3.3 prints it (trimmed to four slots): two DDR4 RDIMMs running
# at 2933 MT/s, one empty slot, and one DIMM described by an older BIOS (Configured Clock Speed in
# MHz, no configured voltage but a minimum voltage).
SERVER = """\
# dmidecode 3.3
Getting SMBIOS data from sysfs.
SMBIOS 3.2.0 present.

Handle 0x1100, DMI type 17, 84 bytes
Memory Device
\tArray Handle: 0x1000
\tError Information Handle: Not Provided
\tTotal Width: 72 bits
\tData Width: 64 bits
\tSize: 32 GB
\tForm Factor: DIMM
\tSet: 1
\tLocator: A1
\tBank Locator: Not Specified
\tType: DDR4
\tType Detail: Synchronous Registered (Buffered)
\tSpeed: 3200 MT/s
\tManufacturer: 00AD063200AD
\tSerial Number: 2B3C4D5E
\tAsset Tag: 01193861
\tPart Number: HMA84GR7CJR4N-XN
\tRank: 2
\tConfigured Memory Speed: 2933 MT/s
\tMinimum Voltage: 1.2 V
\tMaximum Voltage: 1.2 V
\tConfigured Voltage: 1.2 V
\tMemory Technology: DRAM
\tMemory Operating Mode Capability: Volatile memory
\tNon-Volatile Size: None
\tVolatile Size: 32 GB
\tCache Size: None
\tLogical Size: None

Handle 0x1101, DMI type 17, 84 bytes
Memory Device
\tArray Handle: 0x1000
\tError Information Handle: Not Provided
\tTotal Width: Unknown
\tData Width: Unknown
\tSize: No Module Installed
\tForm Factor: DIMM
\tSet: 1
\tLocator: A2
\tBank Locator: Not Specified
\tType: Unknown
\tType Detail: Synchronous
\tSpeed: Unknown
\tManufacturer: Not Specified
\tSerial Number: Not Specified
\tAsset Tag: Not Specified
\tPart Number: Not Specified
\tRank: Unknown
\tConfigured Memory Speed: Unknown
\tMinimum Voltage: Unknown
\tMaximum Voltage: Unknown
\tConfigured Voltage: Unknown

Handle 0x1102, DMI type 17, 84 bytes
Memory Device
\tArray Handle: 0x1000
\tError Information Handle: Not Provided
\tTotal Width: 72 bits
\tData Width: 64 bits
\tSize: 32 GB
\tForm Factor: DIMM
\tSet: 2
\tLocator: B1
\tBank Locator: Not Specified
\tType: DDR4
\tType Detail: Synchronous Registered (Buffered)
\tSpeed: 3200 MT/s
\tManufacturer: 00AD063200AD
\tSerial Number: 2B3C4D5F
\tAsset Tag: 01193861
\tPart Number: HMA84GR7CJR4N-XN
\tRank: 2
\tConfigured Memory Speed: 2933 MT/s
\tMinimum Voltage: 1.2 V
\tMaximum Voltage: 1.2 V
\tConfigured Voltage: 1.2 V

Handle 0x1103, DMI type 17, 40 bytes
Memory Device
\tArray Handle: 0x1000
\tError Information Handle: Not Provided
\tTotal Width: 72 bits
\tData Width: 64 bits
\tSize: 16384 MB
\tForm Factor: DIMM
\tSet: None
\tLocator: B2
\tBank Locator: NODE 1
\tType: DDR4
\tType Detail: Synchronous
\tSpeed: 2666 MHz
\tManufacturer: Samsung
\tSerial Number: 12345678
\tAsset Tag: Not Specified
\tPart Number: M393A2K40CB2-CTD
\tRank: 1
\tConfigured Clock Speed: 2666 MHz
\tMinimum Voltage: 1.2 V
\tMaximum Voltage: 1.2 V
\tConfigured Voltage: Unknown

Handle 0x0020, DMI type 16, 23 bytes
Physical Memory Array
\tLocation: System Board Or Motherboard
\tNumber Of Devices: 4
"""

# A QEMU/KVM guest: the DIMM exists but its voltage and speed are Unknown.
QEMU = """\
# dmidecode 3.3
Getting SMBIOS data from sysfs.
SMBIOS 2.8 present.

Handle 0x1100, DMI type 17, 40 bytes
Memory Device
\tArray Handle: 0x1000
\tError Information Handle: Not Provided
\tTotal Width: Unknown
\tData Width: Unknown
\tSize: 16 GB
\tForm Factor: DIMM
\tSet: None
\tLocator: DIMM 0
\tBank Locator: Not Specified
\tType: RAM
\tType Detail: Other
\tSpeed: Unknown
\tManufacturer: QEMU
\tSerial Number: Not Specified
\tAsset Tag: Not Specified
\tPart Number: Not Specified
\tRank: Unknown
\tConfigured Memory Speed: Unknown
\tMinimum Voltage: Unknown
\tMaximum Voltage: Unknown
\tConfigured Voltage: Unknown

Handle 0x1101, DMI type 17, 40 bytes
Memory Device
\tArray Handle: 0x1000
\tError Information Handle: Not Provided
\tTotal Width: Unknown
\tData Width: Unknown
\tSize: 8192 MB
\tForm Factor: DIMM
\tSet: None
\tLocator: DIMM 1
\tBank Locator: Not Specified
\tType: RAM
\tType Detail: Other
\tSpeed: Unknown
\tManufacturer: QEMU
\tSerial Number: Not Specified
\tAsset Tag: Not Specified
\tPart Number: Not Specified
\tRank: Unknown
\tConfigured Memory Speed: Unknown
\tMinimum Voltage: Unknown
\tMaximum Voltage: Unknown
\tConfigured Voltage: Unknown
"""

FIX = ("GREEN_MLOPS_DRAM_DIMMS", "GREEN_MLOPS_DRAM_VOLTAGE_V", "GREEN_MLOPS_DRAM_MT_S")


def test_capacitance_calibrated_to_3w_ddr4_3200():
    assert DIMM_CAPACITANCE_F == pytest.approx(1.3020833e-9)
    assert 0.5 * DIMM_CAPACITANCE_F * 1.2**2 * 3200e6 == pytest.approx(3.0)
    assert W_PER_GB == 0.375


def test_parse_server_sample():
    assert parse_dmidecode(SERVER) == [
        DimmInfo(32.0, 1.2, 2933.0),
        DimmInfo(32.0, 1.2, 2933.0),
        DimmInfo(16.0, 1.2, 2666.0),  # 16384 MB; Minimum Voltage; Configured Clock Speed in MHz
    ]


def test_parse_qemu_sample_keeps_unknowns_as_none():
    assert parse_dmidecode(QEMU) == [DimmInfo(16.0, None, None), DimmInfo(8.0, None, None)]
    assert parse_dmidecode("") == []
    assert parse_dmidecode("# No SMBIOS nor DMI entry point found, sorry.\n") == []


def test_dimm_formula_from_dmidecode():
    found = discover_dram_model(Settings(), "no RAPL: no dram zone", dimms=parse_dmidecode(SERVER))
    (src,) = found.sources
    (f,) = found.findings
    # ½·C·V²·f = 3 W × f / 3200 MT/s at 1.2 V: 2 × 3 × 2933/3200 + 3 × 2666/3200
    expected = 2 * 2.7496875 + 2.499375
    assert src.power_w == pytest.approx(expected)
    assert (src.info.name, src.info.domain, src.info.provenance, src.info.method) == (
        "dram", "dram", "estimated", "dimm-cv2f-model")
    assert "over 3 DIMMs" in src.info.detail and "2933 MT/s" in src.info.detail and "2666 MT/s" in src.info.detail
    assert "dmidecode" in src.info.detail and "8.00 W" in src.info.detail
    assert (f.component, f.status, f.method) == ("dram", "estimated", "dimm-cv2f-model")
    assert f.reason.startswith("no RAPL: no dram zone; estimated as P = Σ ½·C·V²·f")


def test_settings_win_over_dmidecode():
    s = Settings(dram_dimms=16, dram_voltage_v=1.1, dram_mt_s=4800)
    found = discover_dram_model(s, "no RAPL", dimms=parse_dmidecode(SERVER))
    (src,) = found.sources
    # 16 × ½ × 1.30208e-9 F × 1.21 V² × 4.8e9 /s = 16 × 3.78125 W
    assert src.power_w == pytest.approx(60.5)
    assert src.info.method == "dimm-cv2f-model" and "settings" in src.info.detail


def test_partial_settings_fill_unknowns():
    found = discover_dram_model(Settings(dram_voltage_v=1.2, dram_mt_s=3200), "no RAPL", dimms=parse_dmidecode(QEMU))
    assert found.sources[0].info.method == "dimm-cv2f-model"
    assert found.sources[0].power_w == pytest.approx(6.0)  # two DIMMs × 3 W


def test_per_gb_fallback_for_vm_dimms():
    found = discover_dram_model(Settings(), "no RAPL: /sys/class/powercap does not exist",
                                dimms=parse_dmidecode(QEMU), mem_total_bytes=64 * 2**30)
    (src,) = found.sources
    (f,) = found.findings
    assert src.power_w == pytest.approx(24.0)  # 0.375 W/GiB × 64 GiB
    assert src.info.method == "per-gb-model" and f.method == "per-gb-model" and f.status == "estimated"
    assert "0.375 W/GiB × 64.00 GiB" in src.info.detail and "24.00 W" in src.info.detail
    assert f.reason.startswith("no RAPL: /sys/class/powercap does not exist; estimated as P = 0.375 W/GiB")
    assert "DIMM voltage/speed unknown for 2 of 2 DIMMs (typical of a virtual machine)" in f.reason
    assert all(v in f.reason for v in FIX)


def test_per_gb_with_read_reason_and_setting():
    found = discover_dram_model(Settings(dram_w_per_gb=0.5, dram_dimms=4), "no RAPL", dimms=[],
                                mem_total_bytes=64 * 2**30)
    (src,) = found.sources
    assert src.power_w == pytest.approx(32.0)
    assert "GREEN_MLOPS_DRAM_W_PER_GB" in src.info.detail
    reason = found.findings[0].reason
    assert "no DIMMs were listed" in reason and "also needs the voltage and speed" in reason


def test_energy_is_constant_power_times_time():
    src = DramModel(24.0, "per-gb-model", "P = 24 W")
    first = src.read(Tick(t=10.0, full=True))
    assert first.power_W == 24.0 and first.energy_J == 0.0
    assert src.read(Tick(t=12.5, full=False)).energy_J == pytest.approx(60.0)
    r = src.read(Tick(t=20.0, full=True))
    assert r.power_W == 24.0 and r.energy_J == pytest.approx(240.0)
    assert src.counter_interval == 0


def _fake_dmidecode(tmp_path, monkeypatch, script):
    exe = tmp_path / "dmidecode"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")


def test_read_dimms_needs_root(tmp_path, monkeypatch):
    _fake_dmidecode(tmp_path, monkeypatch,
                    "echo '# dmidecode 3.3'\necho '/sys/firmware/dmi/tables/smbios_entry_point: Permission denied' >&2\n"
                    "echo '/dev/mem: Permission denied' >&2\nexit 1\n")
    dimms, why = read_dimms()
    assert dimms == [] and "needs root" in why
    found = discover_dram_model(Settings(), "no RAPL", mem_total_bytes=8 * 2**30)
    assert found.sources[0].power_w == pytest.approx(3.0)
    assert "dmidecode needs root" in found.findings[0].reason


def test_read_dimms_parses_output(tmp_path, monkeypatch):
    (tmp_path / "out.txt").write_text(SERVER)
    _fake_dmidecode(tmp_path, monkeypatch, f"cat '{tmp_path / 'out.txt'}'\n")
    dimms, why = read_dimms()
    assert why == "" and len(dimms) == 3


def test_read_dimms_not_installed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert read_dimms() == ([], "dmidecode is not installed")


def test_real_machine_integration():
    """No doubles: whatever dmidecode and RAM this machine has."""
    found = discover_dram_model(Settings(), "no RAPL: integration test")
    (src,) = found.sources
    (f,) = found.findings
    assert src.info.provenance == "estimated" and f.status == "estimated"
    assert src.info.method in ("dimm-cv2f-model", "per-gb-model")
    from green_mlops.meter import host

    util = host.CpuUtilisation()
    src.read(Tick(t=0.0, full=True))
    u = util.sample()
    r = src.read(Tick(t=1.5, full=False, cpu_util=u))
    assert math.isfinite(r.power_W) and 0.1 < r.power_W < 2000
    assert r.energy_J == pytest.approx(r.power_W * 1.5)
