"""NVIDIA Jetson (Orin, Xavier, Nano): the board's INA3221 power monitors, read through sysfs.

JetPack 5 and later (Orin) expose them through the mainline ``ina3221`` hwmon driver
(``in{N}_label``, bus voltage ``in{N}_input`` in mV, ``curr{N}_input`` in mA); JetPack 4 (Xavier,
Nano, TX2) through the ``ina3221x`` iio driver (``rail_name_{N}``, ``in_power{N}_input`` in mW).
Each rail is a source named as the board names it (VDD_GPU_SOC, VDD_CPU_CV, GPU, CPU, …). The
monitors give power, not energy: energy is the power integrated over the sampler's ticks, and the
method says so. A rail feeding several domains (VDD_CPU_GPU_CV) is one source that ``covers`` the
others; the board's input rail (VIN_SYS_5V0, VDD_IN, POM_5V_IN) already holds every other rail and
is not added; SoC and CV rails are outside the gpu/cpu/dram domains and are listed, not added.
``GREEN_MLOPS_SYSFS_ROOT`` moves the root (tests point it at a fake tree).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Domain, Finding, PowerSource, Reading, SourceError, SourceInfo, Tick

METHOD = "ina3221-power-integrated"
_INPUT = re.compile(r"(^|_)(VIN|IN)(_|$)|SYS_?5V|^POM_5V_IN$")
_DRAM = re.compile(r"DDR|VDDQ|VDDRQ|VDD2")


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel: the board's name for it and how to read its power in watts."""

    label: str
    files: tuple[Path, ...]
    kind: str  # "mW" (one power file) or "mV*mA" (bus voltage × current)

    def watts(self) -> float:
        values = [float(f.read_text().strip()) for f in self.files]
        return values[0] / 1e3 if self.kind == "mW" else values[0] * values[1] / 1e6


def classify(label: str) -> tuple[Domain | None, tuple[Domain, ...]]:
    """The domain a rail is metered as and the other domains it also feeds; (None, ()) for rails not added."""
    name = label.upper()
    if _INPUT.search(name):
        return None, ()
    if "GPU" in name:
        return "gpu", (("cpu",) if "CPU" in name else ())
    if "CPU" in name:
        return "cpu", ()
    if _DRAM.search(name):
        return "dram", ()
    return None, ()


def _text(path: Path) -> str:
    return path.read_text().strip()


def find_rails(sysfs: Path) -> list[Rail]:
    """Every connected INA3221 channel under ``sysfs``, hwmon (JetPack 5+) then iio (JetPack 4)."""
    rails: list[Rail] = []
    drivers = sysfs / "bus" / "i2c" / "drivers"
    for dev in sorted(drivers.glob("ina3221/*/hwmon/hwmon*")):
        for label_file in sorted(dev.glob("in*_label")):
            n = label_file.name[2:-len("_label")]
            volt, curr = dev / f"in{n}_input", dev / f"curr{n}_input"
            label = _text(label_file)
            if label.upper() != "NC" and volt.exists() and curr.exists():
                rails.append(Rail(label, (volt, curr), "mV*mA"))
    for dev in sorted(drivers.glob("ina3221x/*/iio:device*")):
        for name_file in sorted(dev.glob("rail_name_*")):
            n = name_file.name.rsplit("_", 1)[1]
            power = dev / f"in_power{n}_input"
            label = _text(name_file)
            if label.upper() != "NC" and power.exists():
                rails.append(Rail(label, (power,), "mW"))
    return rails


def is_jetson(sysfs: Path) -> bool:
    """True on a Tegra board (device tree ``compatible`` names nvidia,tegra…)."""
    try:
        return b"nvidia,tegra" in (sysfs / "firmware" / "devicetree" / "base" / "compatible").read_bytes()
    except OSError:
        return False


class JetsonRail(PowerSource):
    """One rail's power, read each tick; the trace integrates it to energy."""

    def __init__(self, rail: Rail, name: str, domain: Domain, covers: tuple[Domain, ...]) -> None:
        self.rail = rail
        self.covers = covers
        feeds = f" (feeds {domain} and {', '.join(covers)})" if covers else ""
        how = "in_power (mW)" if rail.kind == "mW" else "bus voltage (mV) × current (mA)"
        detail = (f"Jetson INA3221 rail {rail.label}{feeds}: power from {how} at {rail.files[0].parent}, "
                  "integrated over the sampler's ticks (the monitor has no energy counter)")
        self.info = SourceInfo(name, domain, "measured", METHOD, detail)

    def read(self, tick: Tick) -> Reading:
        try:
            watts = self.rail.watts()
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.info.name}: cannot read {self.rail.files[0]}: {exc}") from exc
        return Reading(power_W=watts if math.isfinite(watts) else math.nan)


def discover_jetson(settings: Settings) -> Discovery:
    """Open a source per INA3221 rail in the gpu/cpu/dram domains; list the others and say why."""
    found = Discovery()
    sysfs = Path(settings.sysfs_root)
    try:
        rails = find_rails(sysfs)
    except OSError as exc:
        rails = []
        if is_jetson(sysfs):
            found.findings.append(Finding("gpu", "absent", METHOD, f"cannot list INA3221 monitors under {sysfs}: {exc}"))
            return found
    if not rails:
        if is_jetson(sysfs):
            found.findings.append(Finding("gpu", "absent", METHOD,
                                          f"Jetson board, but no INA3221 rail under {sysfs}/bus/i2c/drivers "
                                          "(ina3221 hwmon or ina3221x iio); is the driver loaded?"))
        return found
    seen: set[str] = set()
    for rail in rails:
        domain, covers = classify(rail.label)
        name = rail.label if rail.label not in seen else f"{rail.label}@{rail.files[0].parent.name}"
        seen.add(name)
        if domain is None:
            why = ("the board's input: it already holds every other rail, so adding it would count them twice"
                   if _INPUT.search(rail.label.upper()) else "outside the gpu/cpu/dram domains (SoC, CV, I/O)")
            found.findings.append(Finding(name, "absent", METHOD, f"INA3221 rail {rail.label}: not added, {why}"))
            continue
        src = JetsonRail(rail, name, domain, covers)
        found.sources.append(src)
        found.findings.append(Finding(name, "measured", METHOD, src.info.detail))
    return found
