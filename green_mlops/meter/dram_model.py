"""DRAM power estimated where RAPL has no DRAM domain: the paper's per-DIMM formula, else per GB.

Method 1 (``dimm-cv2f-model``), the paper's (§2): P_DRAM = Σ_DIMM ½·C·V²·f, with each DIMM's
operating voltage V and data rate f (transfers/s) read from the SMBIOS tables (``dmidecode -t 17``)
or stated in settings, and one fixed capacitance C (:data:`DIMM_CAPACITANCE_F`). The paper notes V
and f do not change during operation, so the power is constant.

Method 2 (``per-gb-model``), when DIMM facts cannot be read (VMs report "Unknown"; dmidecode
needs root): P = :data:`W_PER_GB` × installed RAM. Also constant.

Both are ``estimated``; the source's ``detail`` gives the formula with the numbers used, and the
finding says why method 1 was not possible and which settings would enable it.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from green_mlops.meter import host
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Finding, PowerSource, Reading, SourceInfo, Tick

METHOD_DIMM = "dimm-cv2f-model"
METHOD_PER_GB = "per-gb-model"

#: Effective switched capacitance of one DIMM, in farads. The paper fixes C for all its
#: experiments but does not publish the value; we calibrate it so that a DDR4-3200 DIMM at 1.2 V
#: draws 3 W (the per-module figure of W_PER_GB below): C = 2·3 W / ((1.2 V)² · 3.2e9 /s)
#: ≈ 1.302e-9 F. Other DIMMs then scale with V² and f, e.g. DDR5-4800 at 1.1 V ≈ 3.78 W.
DIMM_CAPACITANCE_F = 2 * 3.0 / (1.2**2 * 3200e6)

#: Watts per GB of installed RAM when DIMM facts are unreadable: 3 W per 8 GB module, i.e.
#: 0.375 W/GB. Source: Crucial's (Micron's) guidance "allocate around 3 watts of power for every
#: 8GB of DDR3 or DDR4 memory" (crucial.com, "How much power does memory use?"), consistent with
#: Micron's DDR4 power calculator (TN-40-07, ≈0.41 W/GB); the constant CodeCarbon uses. Module sizes
#: are binary ("8 GB" = 8 GiB), so RAM is counted in GiB: bytes / 2**30.
W_PER_GB = 0.375

_BYTES_PER_GB = float(2**30)
_ENV_FIX = "GREEN_MLOPS_DRAM_DIMMS, GREEN_MLOPS_DRAM_VOLTAGE_V, GREEN_MLOPS_DRAM_MT_S"
DMIDECODE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DimmInfo:
    """One populated memory slot: size in GB (binary, as dmidecode reports), volts, MT/s; None = unknown."""

    size_gb: float | None
    voltage_v: float | None
    mt_s: float | None

    @property
    def complete(self) -> bool:
        return self.voltage_v is not None and self.mt_s is not None


def dimm_power_w(voltage_v: float, mt_s: float) -> float:
    """½·C·V²·f for one DIMM, f in transfers per second."""
    return 0.5 * DIMM_CAPACITANCE_F * voltage_v**2 * mt_s * 1e6


_NUM = r"([0-9]+(?:\.[0-9]+)?)"


def _size_gb(value: str) -> float | None:
    m = re.match(_NUM + r"\s*(TB|GB|MB|kB|KB|bytes)\b", value, re.IGNORECASE)
    if not m:
        return None
    scale = {"tb": 1024.0, "gb": 1.0, "mb": 1 / 1024, "kb": 1 / 1024**2, "bytes": 1 / 1024**3}
    return float(m.group(1)) * scale[m.group(2).lower()]


def _voltage(value: str) -> float | None:
    m = re.match(_NUM + r"\s*(mV|V)\b", value)
    if not m:
        return None
    v = float(m.group(1)) / (1000.0 if m.group(2) == "mV" else 1.0)
    return v if v > 0 else None


def _speed(value: str) -> float | None:
    # dmidecode prints the data rate: "MT/s" since 3.2; older versions wrote the same number as "MHz"
    m = re.match(_NUM + r"\s*(MT/s|MHz)", value, re.IGNORECASE)
    if not m:
        return None
    f = float(m.group(1))
    return f if f > 0 else None


def _first(fields: dict[str, str], keys: tuple[str, ...], parse: Callable[[str], float | None]) -> float | None:
    for key in keys:
        if key in fields:
            got = parse(fields[key])
            if got is not None:
                return got
    return None


def parse_dmidecode(text: str) -> list[DimmInfo]:
    """Populated DIMMs from ``dmidecode -t 17`` output; empty slots ("No Module Installed") are skipped.

    Voltage: "Configured Voltage", else "Minimum Voltage", else "Voltage". Speed: "Configured Memory
    Speed" (or the older "Configured Clock Speed", whose MHz figure is the data rate in MT/s), else
    the rated "Speed". Fields reading "Unknown" (typical of VMs) become None.
    """
    dimms: list[DimmInfo] = []
    blocks = re.split(r"^Handle 0x[0-9A-Fa-f]+.*$", text, flags=re.MULTILINE)
    for block in blocks:
        lines = block.strip("\n").splitlines()
        lines = [ln for ln in lines if ln.strip()]
        if not lines or lines[0].strip() != "Memory Device":
            continue
        fields: dict[str, str] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
        size = fields.get("Size", "")
        if not size or re.match(r"(No Module Installed|Not Installed|0\s*[MG]B|None)\b", size, re.IGNORECASE):
            continue
        dimms.append(DimmInfo(
            size_gb=_size_gb(size),
            voltage_v=_first(fields, ("Configured Voltage", "Minimum Voltage", "Voltage"), _voltage),
            mt_s=_first(fields, ("Configured Memory Speed", "Configured Clock Speed", "Speed"), _speed),
        ))
    return dimms


def read_dimms() -> tuple[list[DimmInfo], str]:
    """DIMMs from ``dmidecode -t 17``, and a reason when they could not be read ("" on success)."""
    exe = shutil.which("dmidecode")
    if exe is None:
        return [], "dmidecode is not installed"
    try:
        proc = subprocess.run([exe, "-t", "17"], capture_output=True, text=True,
                              timeout=DMIDECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return [], f"dmidecode timed out after {DMIDECODE_TIMEOUT_S:g} s"
    except OSError as exc:
        return [], f"dmidecode failed to start: {exc}"
    err = " ".join(proc.stderr.split())
    dimms = parse_dmidecode(proc.stdout)
    if dimms:
        return dimms, ""
    if re.search(r"permission denied|operation not permitted|can't read memory|must be root", err, re.IGNORECASE):
        return [], "dmidecode needs root (run as root or set the DIMM facts in settings)"
    if proc.returncode != 0:
        return [], f"dmidecode failed (exit {proc.returncode}: {err[:200] or 'no message'})"
    return [], "dmidecode listed no populated memory devices"


class DramModel(PowerSource):
    """Constant DRAM power from a model; energy = P × (t − t_first), returned every tick."""

    counter_interval = 0.0

    def __init__(self, power_w: float, method: str, detail: str) -> None:
        self.power_w = float(power_w)
        self.info = SourceInfo(name="dram", domain="dram", provenance="estimated", method=method, detail=detail)
        self._t0: float | None = None

    def read(self, tick: Tick) -> Reading:
        if self._t0 is None:
            self._t0 = tick.t
        return Reading(power_W=self.power_w, energy_J=self.power_w * max(tick.t - self._t0, 0.0))


def _dimm_formula(groups: Counter[tuple[float, float]], origin: str) -> tuple[float, str]:
    total = sum(n * dimm_power_w(v, f) for (v, f), n in groups.items())
    terms = " + ".join(f"{n} × ½ × {DIMM_CAPACITANCE_F:.4g} F × ({v:g} V)² × {f:g} MT/s"
                       for (v, f), n in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])))
    count = sum(groups.values())
    return total, f"P = Σ ½·C·V²·f over {count} DIMMs = {terms} = {total:.2f} W ({origin})"


def discover_dram_model(settings: Settings, why: str, dimms: list[DimmInfo] | None = None,
                        mem_total_bytes: float | None = None) -> Discovery:
    """Open the DRAM model: the per-DIMM formula where V and f are known, else the per-GB estimate."""
    # Method 1 from settings: all three facts stated, they win over anything read from the machine.
    if settings.dram_dimms and settings.dram_voltage_v and settings.dram_mt_s:
        groups = Counter({(float(settings.dram_voltage_v), float(settings.dram_mt_s)): int(settings.dram_dimms)})
        power, detail = _dimm_formula(groups, f"DIMM facts from settings {_ENV_FIX}")
        return _found(power, METHOD_DIMM, detail, why)

    not_dimm = ""
    if dimms is None:
        dimms, not_dimm = read_dimms()
    # A voltage or speed setting alone fills in (and overrides) that fact for every DIMM read.
    dimms = [DimmInfo(d.size_gb, settings.dram_voltage_v or d.voltage_v, settings.dram_mt_s or d.mt_s)
             for d in dimms]
    if dimms and all(d.complete for d in dimms):
        groups = Counter((float(d.voltage_v), float(d.mt_s)) for d in dimms)  # type: ignore[arg-type]
        power, detail = _dimm_formula(groups, "DIMM voltage and speed from dmidecode")
        return _found(power, METHOD_DIMM, detail, why)
    if dimms:
        unknown = sum(not d.complete for d in dimms)
        not_dimm = (f"DIMM voltage/speed unknown for {unknown} of {len(dimms)} DIMMs "
                    "(typical of a virtual machine)")
    elif not not_dimm:
        not_dimm = "no DIMMs were listed"
    if settings.dram_dimms and not (settings.dram_voltage_v and settings.dram_mt_s):
        not_dimm += "; GREEN_MLOPS_DRAM_DIMMS is set but the formula also needs the voltage and speed"

    total = float(mem_total_bytes if mem_total_bytes is not None else host.memory_total_bytes())
    gib = total / _BYTES_PER_GB
    w_per_gb = float(settings.dram_w_per_gb or W_PER_GB)
    origin = ("from GREEN_MLOPS_DRAM_W_PER_GB" if settings.dram_w_per_gb
              else "default: 3 W per 8 GB module, Crucial/Micron")
    power = w_per_gb * gib
    detail = (f"P = {w_per_gb:g} W/GiB × {gib:.2f} GiB RAM (OS total; a DIMM's \"8 GB\" is 8 GiB) "
              f"= {power:.2f} W ({origin})")
    fix = f"for the paper's per-DIMM formula ½·C·V²·f, set {_ENV_FIX}"
    return _found(power, METHOD_PER_GB, detail, why, f"DIMM formula not possible: {not_dimm}; {fix}")


def _found(power: float, method: str, detail: str, why: str, extra: str = "") -> Discovery:
    if not math.isfinite(power) or power < 0:
        power = math.nan
    src = DramModel(power, method, detail)
    reason = f"{why}; estimated as {detail}" + (f"; {extra}" if extra else "")
    return Discovery(sources=[src], findings=[Finding(component="dram", status="estimated", method=method,
                                                      reason=reason)])
