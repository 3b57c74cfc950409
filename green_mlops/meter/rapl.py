"""CPU package and DRAM energy measured by RAPL, read from the Linux powercap tree.

Each ``package-N`` zone becomes a ``cpu`` source and each ``dram`` zone (a subzone of a package or,
on some machines, a top-level zone) a ``dram`` source. ``core`` and ``uncore`` are parts of the
package and ``intel-rapl-mmio`` repeats it, so reading them would double count; ``psys`` covers the
whole platform. AMD kernels expose the same ``intel-rapl`` names and are handled identically.

``energy_uj`` is a µJ counter that wraps to 0 after ``max_energy_range_uj`` (about 262 kJ: some
minutes at hundreds of watts). Each read adds ``(raw - previous) mod range``. Only when the sampler
stalled long enough for the counter to wrap whole ranges even at the zone's plausible maximum power
(its ``constraint_*_max_power_uw`` or power limits when the zone has them, else :data:`MAX_POWER_W`)
are the wraps it could not see estimated, from the mean power over the last seconds of ordinary
reads (never one interval's, which a jittery or starved sampler makes wild), bounded by that
maximum; they are reported in ``extra_wraps`` and ``warnings``.
"""
from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass
from pathlib import Path

from green_mlops.meter.settings import Settings
from green_mlops.meter.source import (
    Discovery,
    Domain,
    Finding,
    PowerSource,
    Reading,
    SourceError,
    SourceInfo,
    Tick,
)

METHOD = "rapl"

MAX_POWER_W = {"cpu": 1000.0, "dram": 500.0}  # above any package or DRAM zone, when the zone states no limit
TRUST_WINDOW_S = 10.0  # the wrap estimate uses the mean power of ordinary reads over this many seconds
MIN_TRUSTED_S = 1.0  # ... and needs at least this much of them
_ZONE_RE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
_PACKAGE_RE = re.compile(r"^package-(\d+)$")

PERMISSION_FIX = (
    "since Linux 5.10 energy_uj is readable only by root (CVE-2020-8694, PLATYPUS). "
    "Fix once with `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*/intel-rapl:*/energy_uj`, or persistently with a udev rule, "
    "e.g. a file /etc/udev/rules.d/99-green-mlops-rapl.rules containing "
    '`SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod o+r /sys%p/energy_uj"`. '
    "Until then the meter falls back to an estimate."
)


def _read_int(path: Path) -> int:
    """The integer held by one sysfs file; every read of the tree goes through here."""
    with open(path) as f:
        return int(f.read().strip())


@dataclass(frozen=True)
class _Zone:
    """A powercap zone worth reading: where it is, what RAPL calls it, and whose it is."""

    path: Path
    zone_id: str
    zone_name: str
    domain: Domain
    socket: int


class RaplZone(PowerSource):
    """One RAPL zone: cumulative energy since the first read, and power between reads."""

    def __init__(self, path: Path, zone_id: str, zone_name: str, domain: Domain, socket: int,
                 range_uj: int, max_power_W: float | None = None) -> None:
        self.path = path
        self.range_uj = range_uj
        self.max_power_W = max_power_W or _max_power_W(path) or MAX_POWER_W[domain]
        self.info = SourceInfo(f"{domain}{socket}", domain, "measured", METHOD,
                               f"powercap {zone_id} ({zone_name})")
        self.extra_wraps = 0
        self.warnings: list[str] = []
        self._last_raw: int | None = None
        self._last_t = math.nan
        self._recent: collections.deque[tuple[float, float]] = collections.deque()  # (dt, J) of ordinary reads
        self._energy_J = 0.0

    def read(self, tick: Tick) -> Reading:
        try:
            raw = _read_int(self.path / "energy_uj")
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.info.name}: cannot read {self.path / 'energy_uj'}: {exc}") from exc
        if self._last_raw is None:
            self._last_raw, self._last_t = raw, tick.t
            return Reading(power_W=math.nan, energy_J=0.0)
        dt = tick.t - self._last_t
        delta_J = ((raw - self._last_raw) % self.range_uj) / 1e6
        k = self._missed_wraps(dt, delta_J)
        if k == 0 and dt > 0:
            self._trust(dt, delta_J)
        delta_J += k * self.range_uj / 1e6
        self._energy_J += delta_J
        power = delta_J / dt if dt > 0 else math.nan
        self._last_raw, self._last_t = raw, tick.t
        return Reading(power_W=power, energy_J=self._energy_J)

    def _trust(self, dt: float, joules: float) -> None:
        """Keep an ordinary read for the mean power: the last TRUST_WINDOW_S seconds of them."""
        self._recent.append((dt, joules))
        span = sum(d for d, _ in self._recent)
        while len(self._recent) > 1 and span - self._recent[0][0] >= TRUST_WINDOW_S:
            span -= self._recent.popleft()[0]

    def trusted_power_W(self) -> float | None:
        """Mean power over the last seconds of ordinary reads, bounded by the zone's maximum; None before a second."""
        span = sum(d for d, _ in self._recent)
        if span < MIN_TRUSTED_S:
            return None
        return min(sum(j for _, j in self._recent) / span, self.max_power_W)

    def _missed_wraps(self, dt: float, naive_J: float) -> int:
        """Whole wraps the modulo cannot see, after a real stall, from the trusted mean power × elapsed time.

        A stall is real when even the zone's maximum power could have filled a whole range in ``dt``;
        the estimate never exceeds what that maximum allows. It is an estimate, so it is counted in
        ``extra_wraps`` and reported in ``warnings``.
        """
        range_J = self.range_uj / 1e6
        if dt <= 0 or self.max_power_W * dt - naive_J < range_J / 2:
            return 0  # no power the zone can draw wraps the counter a whole range in this time
        power = self.trusted_power_W()
        if power is None:
            if dt < 3 * MIN_TRUSTED_S:  # the first reads of a fast-wrapping counter: ordinary, not a stall
                return 0
            self.warnings.append(
                f"{self.info.name}: {dt:.3g} s between reads of {self.path / 'energy_uj'}, long enough for "
                f"the counter to wrap ({range_J:.4g} J range) unseen, but no power is known yet to estimate "
                "it; wraps in this interval, if any, are not counted")
            return 0
        most = max(0, math.floor((self.max_power_W * dt - naive_J) / range_J))
        k = min(max(0, round((power * dt - naive_J) / range_J)), most)
        if k:
            self.extra_wraps += k
            self.warnings.append(
                f"{self.info.name}: {dt:.3g} s between reads of {self.path / 'energy_uj'}, longer than the "
                f"counter's range ({range_J:.4g} J) lasts at the mean {power:.4g} W of the last seconds; "
                f"assumed {k} extra wrap(s), so this interval's energy is estimated")
        return k


def _max_power_W(path: Path) -> float | None:
    """The highest power the zone's constraints state (max power or power limit), in W; None without any."""
    found = []
    for f in path.glob("constraint_*_*_uw"):
        if f.name.endswith(("_max_power_uw", "_power_limit_uw")):
            try:
                found.append(_read_int(f) / 1e6)
            except (OSError, ValueError):
                continue
    found = [w for w in found if 0 < w < 100_000]
    return max(found) if found else None


def _zone_dirs(root: Path) -> dict[str, Path]:
    """Every ``intel-rapl:N`` and ``intel-rapl:N:M`` dir under ``root``, once each (sysfs lists
    subzones both at the top and inside their package)."""
    found: dict[str, Path] = {}
    parents = [root] + [p for p in (root / "intel-rapl",) if p.is_dir()]
    for parent in parents:
        for entry in sorted(parent.iterdir()):
            if _ZONE_RE.match(entry.name) and entry.is_dir():
                found.setdefault(entry.name, entry)
    for zone_id, path in list(found.items()):
        if zone_id.count(":") == 1:
            for sub in sorted(path.iterdir()):
                if sub.name.startswith(zone_id + ":") and _ZONE_RE.match(sub.name) and sub.is_dir():
                    found.setdefault(sub.name, sub)
    return found


def _zones(root: Path) -> list[_Zone]:
    """The package and DRAM zones under ``root``, numbered by socket and sorted by it."""
    named: list[tuple[tuple[int, int], str, Path, str]] = []
    for zone_id, path in _zone_dirs(root).items():
        top, _, sub = zone_id.removeprefix("intel-rapl:").partition(":")
        try:
            name = (path / "name").read_text().strip()
        except OSError:
            continue
        named.append(((int(top), int(sub) if sub else -1), zone_id, path, name))
    named.sort()
    package_socket: dict[int, int] = {}
    zones: list[_Zone] = []
    for (top, sub), zone_id, path, name in named:
        pm = _PACKAGE_RE.match(name)
        if pm and sub < 0:
            package_socket[top] = int(pm[1])
            zones.append(_Zone(path, zone_id, name, "cpu", int(pm[1])))
    top_drams = 0
    for (top, sub), zone_id, path, name in named:
        if name != "dram":
            continue
        if sub < 0:
            socket, top_drams = top_drams, top_drams + 1
        else:
            socket = package_socket.get(top, top)
        zones.append(_Zone(path, zone_id, name, "dram", socket))
    return sorted(zones, key=lambda z: (z.domain != "cpu", z.socket))


def discover_rapl(settings: Settings) -> Discovery:
    """Open a source for every readable RAPL package and DRAM zone; explain every one missing."""
    found = Discovery()
    root = Path(settings.powercap_root)
    try:
        zones = _zones(root) if root.is_dir() else None
    except OSError as exc:
        why = f"cannot list the powercap tree at {root}: {exc}"
        found.findings.extend(Finding(d, "absent", METHOD, why) for d in ("cpu", "dram"))
        return found
    if zones is None:
        why = (f"no powercap tree at {root} (typical in VMs and most cloud instances); if the host's "
               "tree is mounted elsewhere, set GREEN_MLOPS_POWERCAP_ROOT to its path")
        found.findings.extend(Finding(d, "absent", METHOD, why) for d in ("cpu", "dram"))
        return found
    denied: dict[str, list[_Zone]] = {"cpu": [], "dram": []}
    for z in zones:
        component = f"{z.domain}{z.socket}"
        try:
            range_uj = _read_int(z.path / "max_energy_range_uj")
            _read_int(z.path / "energy_uj")
        except PermissionError:
            denied[z.domain].append(z)
            continue
        except (OSError, ValueError) as exc:
            found.findings.append(Finding(component, "absent", METHOD,
                                          f"cannot read powercap {z.zone_id} ({z.zone_name}) at {z.path}: {exc}"))
            continue
        if range_uj <= 0:
            found.findings.append(Finding(component, "absent", METHOD,
                                          f"{z.path}/max_energy_range_uj is {range_uj}; cannot handle counter wraps"))
            continue
        src = RaplZone(z.path, z.zone_id, z.zone_name, z.domain, z.socket, range_uj)
        found.sources.append(src)
        found.findings.append(Finding(component, "measured", METHOD,
                                      f"{src.info.detail}: energy counter {z.path / 'energy_uj'}, "
                                      f"wraps every {range_uj / 1e6:.0f} J"))
    for domain, zs in denied.items():
        if zs:
            where = ", ".join(f"{z.zone_id} ({z.zone_name})" for z in zs)
            found.findings.append(Finding(domain, "absent", METHOD,
                                          f"RAPL zones {where} under {root} are not readable: {PERMISSION_FIX}"))
    domains = {z.domain for z in zones}
    if "cpu" not in domains:
        found.findings.append(Finding("cpu", "absent", METHOD, f"no intel-rapl package zone under {root}"))
    if "dram" not in domains:
        why = ("RAPL has no DRAM domain on this CPU (common on client CPUs and AMD)" if "cpu" in domains
               else f"no intel-rapl zone under {root}")
        found.findings.append(Finding("dram", "absent", METHOD, why))
    return found
