"""AMD Instinct GPUs through AMD's ``amdsmi`` Python library (optional: ``pip install amdsmi``, ROCm).

Energy comes from ``amdsmi_get_energy_count``: the accumulator × ``counter_resolution`` (µJ per
tick). The counter is read as a delta from the last read; a decrease is a wrap (a 32-bit firmware
counter) or a reset (driver reload; amdsmi issue #115 reports counters going backwards), and each is
reported as a warning. Socket power (``amdsmi_get_power_info``, watts) shapes the curve between
counter reads. Field quirks (Zeus pull request 203): the MI300X reports ``average_socket_power`` as
"N/A", the MI210 ``current_socket_power``; so each field is probed once and the one that answers is
used. An MI250/MI250X is two dies shown as two GPUs: the even-indexed die reports the power of both
and the odd one 0 W, so the pair is metered once, through the even die.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Finding, PowerSource, Reading, SourceError, SourceInfo, Tick

METHOD_COUNTER = "amdsmi-energy-counter"
METHOD_POWER = "amdsmi-socket-power"
_WRAP_32 = 2**32
#: Seconds discovery waits to check each counter against socket power (once, for all GPUs together).
PROBE_S = 0.25
_ENV_ORDER = ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def _load_amdsmi() -> ModuleType:
    with contextlib.redirect_stdout(None):  # amdsmi prints when libamd_smi.so is missing
        import amdsmi
    return amdsmi


def _indices(raw: str) -> list[int]:
    """Leading decimal entries of a *_VISIBLE_DEVICES list; like HIP, parsing stops at the first other."""
    out: list[int] = []
    for item in (s.strip() for s in raw.split(",")):
        if not item.isdigit():
            break
        out.append(int(item))
    return out


def visible_hip_indices(count: int, env: dict[str, str] | None = None) -> tuple[list[int], str | None]:
    """HIP indices this process sees, in its own order, and the variable that chose them (None: all).

    ROCR_VISIBLE_DEVICES filters first; HIP_VISIBLE_DEVICES (else CUDA_VISIBLE_DEVICES, as ROCm builds
    of PyTorch honour it) then indexes into what ROCR left visible.
    """
    env = os.environ if env is None else env
    visible = list(range(count))
    used: list[str] = []
    rocr = env.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None:
        visible = [visible[i] for i in _indices(rocr) if i < len(visible)]
        used.append("ROCR_VISIBLE_DEVICES")
    hip_var = next((v for v in _ENV_ORDER[1:] if env.get(v) is not None), None)
    if hip_var is not None:
        visible = [visible[i] for i in _indices(env[hip_var]) if i < len(visible)]
        used.append(hip_var)
    return visible, (" and ".join(used) or None)


def _hip_order(amdsmi: Any, handles: list[Any]) -> list[Any]:
    """Processor handles in HIP order: enumeration info (amdsmi 6.4+), else KFD node id, else as listed."""
    enum = getattr(amdsmi, "amdsmi_get_gpu_enumeration_info", None)
    if enum is not None:
        return [h for _, h in sorted(((int(enum(h)["hip_id"]), i), h) for i, h in enumerate(handles))]
    kfd = getattr(amdsmi, "amdsmi_get_gpu_kfd_info", None)
    if kfd is not None:
        return [h for _, h in sorted(((int(kfd(h)["node_id"]), i), h) for i, h in enumerate(handles))]
    return list(handles)


def _watts(value: Any) -> float | None:
    """A socket power field in W, or None when amdsmi reports it as "N/A" (or anything not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _power_fields(amdsmi: Any, handle: Any) -> dict[str, float | None]:
    info = amdsmi.amdsmi_get_power_info(handle)
    return {k: _watts(info.get(k)) for k in ("current_socket_power", "average_socket_power")}


def _counter_uJ(amdsmi: Any, handle: Any) -> tuple[int, float]:
    """The raw accumulator and its resolution in µJ per tick (``power`` before amdsmi 6.2.1)."""
    d = amdsmi.amdsmi_get_energy_count(handle)
    raw = d["energy_accumulator"] if "energy_accumulator" in d else d["power"]
    return int(raw), float(d["counter_resolution"])


def gpu_name(amdsmi: Any, handle: Any) -> str:
    try:
        info = amdsmi.amdsmi_get_gpu_asic_info(handle)
        return str(info.get("market_name") or info.get("name") or "AMD GPU")
    except Exception:  # the name is a label only
        return "AMD GPU"


class AmdGpu(PowerSource):
    """One visible AMD GPU (or MI250 die pair); ``index`` is its position among visible GPUs."""

    def __init__(self, amdsmi: Any, handle: Any, index: int, name: str, settings: Settings,
                 pair_note: str = "", session: _Session | None = None) -> None:
        self._amdsmi, self._h, self.index, self.gpu_name = amdsmi, handle, index, name
        fields = _power_fields(amdsmi, handle)
        self.power_field = next((k for k, v in fields.items() if v is not None), None)
        try:
            _, self.resolution_uJ = _counter_uJ(amdsmi, handle)
            self.has_counter, counter_err = self.resolution_uJ > 0, "counter_resolution is 0"
        except Exception as exc:  # AmdSmiLibraryException, KeyError on odd bindings
            self.has_counter, counter_err = False, str(exc) or type(exc).__name__
        na = [k for k, v in fields.items() if v is None]
        self._quirk = f"; {' and '.join(na)} reported as N/A" if na else ""
        self._pair_note = pair_note
        if self.has_counter:
            self.counter_interval = settings.counter_interval(fine_curve=False)  # no 20 ms buffer: 0.5 s
        self._describe(counter_err)
        self._session = session or _Session(amdsmi)
        self._session.users += 1
        self.warnings: list[str] = []
        self._last_raw: int | None = None
        self._energy_J = 0.0

    def _describe(self, counter_err: str) -> None:
        """Set ``info`` from what works: the counter, else socket power integrated."""
        name = self.gpu_name
        curve = f"amdsmi_get_power_info {self.power_field}" if self.power_field else "no power field (N/A)"
        if self.has_counter:
            method = METHOD_COUNTER
            detail = (f"{name}: energy from amdsmi_get_energy_count (accumulator × {self.resolution_uJ:g} µJ) "
                      f"read every {self.counter_interval:g} s; power curve from {curve}{self._quirk}")
        elif self.power_field:
            method = METHOD_POWER
            detail = (f"{name}: no usable energy counter ({counter_err}); energy integrated from "
                      f"{self.power_field}{self._quirk}")
        else:
            raise SourceError(f"{name}: amdsmi reports neither an energy counter ({counter_err}) nor socket power")
        self.info = SourceInfo(f"gpu{self.index}", "gpu", "measured", method, detail + self._pair_note)

    def disable_counter(self, why: str) -> None:
        """Integrate socket power instead of a counter found implausible (amdsmi issue #38)."""
        self.has_counter, self.counter_interval = False, 0.0
        self._describe(why)

    def read(self, tick: Tick) -> Reading:
        try:
            power = math.nan
            if self.power_field:
                value = _power_fields(self._amdsmi, self._h)[self.power_field]
                power = value if value is not None else math.nan
            energy = self._read_counter() if (self.has_counter and tick.full) else None
        except Exception as exc:  # AmdSmiLibraryException and friends
            raise SourceError(f"{self.info.name}: amdsmi read failed: {exc}") from exc
        return Reading(power_W=power, energy_J=energy)

    def _read_counter(self) -> float:
        """Joules since the first read; wraps of a 32-bit counter and resets are handled and reported."""
        raw, res = _counter_uJ(self._amdsmi, self._h)
        if self._last_raw is None:
            self._last_raw = raw
            return 0.0
        delta = raw - self._last_raw
        if delta < 0 and self._last_raw < _WRAP_32:
            delta += _WRAP_32
            self.warnings.append(f"{self.info.name}: 32-bit energy accumulator wrapped; counted across the wrap")
        elif delta < 0:
            self.warnings.append(f"{self.info.name}: energy counter went backwards; treated as a reset")
            delta = 0
        self._last_raw = raw
        self._energy_J += delta * res / 1e6
        return self._energy_J

    def close(self) -> None:
        self._session.release()


class _Session:
    """One amdsmi_init shared by the GPUs opened together; amdsmi_shut_down once the last one closes."""

    def __init__(self, amdsmi: Any) -> None:
        self.amdsmi, self.users = amdsmi, 0

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            with contextlib.suppress(Exception):
                self.amdsmi.amdsmi_shut_down()


def check_counters(gpus: list[AmdGpu], sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> None:
    """Compare each counter with socket power × time over one short wait; integrate power where they disagree.

    Field reports: a counter that never moves (MI100, AMDResearch/hpcfund issue 21) and one that
    under-reports some 15× (MI210, amdsmi issue #38). Agreement within 10× either way is accepted
    (load may change within the wait); a GPU drawing under 1 W cannot be judged and keeps its counter.
    """
    probe = [g for g in gpus if g.has_counter and g.power_field]
    if not probe:
        return
    before = [(_counter_uJ(g._amdsmi, g._h)[0], _power_fields(g._amdsmi, g._h)[g.power_field]) for g in probe]
    t0 = clock()
    sleep(PROBE_S)
    dt = clock() - t0
    for g, (raw0, p0) in zip(probe, before):
        raw1, res = _counter_uJ(g._amdsmi, g._h)
        p1 = _power_fields(g._amdsmi, g._h)[g.power_field]
        watts = ((p0 or 0.0) + (p1 or 0.0)) / 2
        delta = raw1 - raw0 if raw1 >= raw0 else raw1 + _WRAP_32 - raw0
        counted, expected = delta * res / 1e6, watts * dt
        if watts >= 1.0 and not 0.1 <= counted / expected <= 10:
            g.disable_counter(f"amdsmi_get_energy_count counted {counted:.3g} J over a {dt:.2f} s check while "
                              f"socket power gave {expected:.3g} J (see amdsmi issue #38)")


def _pairs(names: list[str], odd_zero: list[bool]) -> dict[int, int]:
    """MI250/MI250X dies whose power is on their even partner: {odd HIP index: even HIP index}."""
    return {i: i - 1 for i, n in enumerate(names)
            if "MI250" in n and i % 2 == 1 and odd_zero[i] and "MI250" in names[i - 1]}


def discover_amd(settings: Settings, amdsmi: Any | None = None, env: dict[str, str] | None = None,
                 first_index: int = 0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> Discovery:
    """Open every AMD GPU visible to HIP; say why when there is none (never an error).

    ``first_index`` numbers the sources after GPUs another vendor's source already opened.
    """
    found = Discovery()
    try:
        amdsmi = amdsmi or _load_amdsmi()
    except ImportError:
        found.findings.append(Finding("gpu", "absent", "amdsmi",
                                      "amdsmi is not installed (AMD GPUs only: pip install amdsmi, matching ROCm)"))
        return found
    except Exception as exc:  # OSError without libamd_smi.so, AttributeError on a version skew
        found.findings.append(Finding("gpu", "absent", "amdsmi", f"amdsmi cannot load: {exc} (is ROCm installed?)"))
        return found
    try:
        amdsmi.amdsmi_init(amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
        handles = _hip_order(amdsmi, list(amdsmi.amdsmi_get_processor_handles()))
    except Exception as exc:  # AmdSmiLibraryException: no driver, no permission
        found.findings.append(Finding("gpu", "absent", "amdsmi", f"amdsmi unavailable: {exc} (no amdgpu driver?)"))
        return found
    session = _Session(amdsmi)
    found = _open_visible(amdsmi, handles, settings, env, first_index, session)
    try:
        check_counters([s for s in found.sources if isinstance(s, AmdGpu)], sleep, clock)
    except Exception as exc:  # a failed check leaves the counters as they were, said so
        found.findings.append(Finding("gpu", "measured", METHOD_COUNTER,
                                      f"checking the counters against socket power failed ({exc}); used unchecked"))
    now = {s.info.name: s.info for s in found.sources}  # a counter found implausible changed the method
    found.findings[:] = [Finding(f.component, f.status, now[f.component].method, now[f.component].detail)
                         if f.status == "measured" and f.component in now else f for f in found.findings]
    if not found.sources:
        session.release()
    return found


def _open_visible(amdsmi: Any, handles: list[Any], settings: Settings, env: dict[str, str] | None,
                  first_index: int, session: _Session) -> Discovery:
    found = Discovery()
    names = [gpu_name(amdsmi, h) for h in handles]
    odd_zero = [_reports_zero(amdsmi, h) for h in handles]
    pair_of = _pairs(names, odd_zero)
    visible, var = visible_hip_indices(len(handles), env)
    if not visible:
        why = f"{var} hides every AMD GPU" if var else "amdsmi reports no AMD GPU"
        found.findings.append(Finding("gpu", "absent", "amdsmi", why))
        return found
    label = [f"gpu{first_index + i}" for i in range(len(visible))]
    for index, hip in enumerate(visible):
        component = label[index]
        if hip in pair_of:
            even = pair_of[hip]
            if even in visible:
                owner = label[visible.index(even)]
                found.findings.append(Finding(component, "covered", METHOD_COUNTER,
                                              f"{names[hip]} die {hip}: its power is reported with its partner "
                                              f"die {even} and metered once as {owner}"))
            else:
                found.findings.append(Finding(component, "absent", "amdsmi",
                                              f"{names[hip]} die {hip} reports 0 W: the driver reports both dies' "
                                              f"power on die {even}, which {var} hides; make die {even} visible "
                                              "too to meter the pair"))
            continue
        partner = next((o for o, e in pair_of.items() if e == hip), None)
        note = ""
        if partner is not None:
            note = (f"; MI250 die pair {hip}+{partner}: the combined power of both dies, "
                    "as the driver reports it on the even die")
        try:
            gpu = AmdGpu(amdsmi, handles[hip], first_index + index, names[hip], settings, note, session)
        except Exception as exc:
            found.findings.append(Finding(component, "absent", "amdsmi", str(exc)))
            continue
        found.sources.append(gpu)
        found.findings.append(Finding(component, "measured", gpu.info.method, gpu.info.detail))
    return found


def _reports_zero(amdsmi: Any, handle: Any) -> bool:
    try:
        fields = _power_fields(amdsmi, handle)
    except Exception:
        return False
    values = [v for v in fields.values() if v is not None]
    return bool(values) and all(v == 0 for v in values)
