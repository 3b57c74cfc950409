"""Apple silicon: CPU, GPU and Neural Engine energy from macOS's ``powermetrics``, which needs root.

One background ``powermetrics --samplers cpu_power,gpu_power,ane_power -f plist -i N`` process,
started at the first read, writes a plist per N ms separated by NUL bytes. Each holds the energy of
that interval per part (``processor``: ``cpu_energy``, ``gpu_energy``, ``ane_energy`` in mJ; macOS 13+
also ``*_power`` in mW, and ``elapsed_ns``); summed, they are a cumulative counter the integration
anchors on. Without root (and without a sudoers line for ``sudo -n``) nothing runs and the finding
says how to allow it; the CPU then falls back to the TDP model, visibly, and the GPU and ANE are
absent. The ANE is counted in the ``gpu`` domain (the accelerators), as its detail says.
"""
from __future__ import annotations

import atexit
import math
import os
import platform
import plistlib
import shutil
import subprocess
import threading
from collections.abc import Sequence
from typing import Any

from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Discovery, Domain, Finding, PowerSource, Reading, SourceError, SourceInfo, Tick

METHOD = "powermetrics"
INTERVAL_MS = 200
#: (source name, domain, energy key in mJ, power key in mW)
PARTS: tuple[tuple[str, Domain, str, str], ...] = (
    ("cpu", "cpu", "cpu_energy", "cpu_power"),
    ("gpu", "gpu", "gpu_energy", "gpu_power"),
    ("ane", "gpu", "ane_energy", "ane_power"),
)
SUDOERS_HINT = ("powermetrics needs root: run as `sudo green-mlops …` (or start the training under sudo), or allow "
                "it without a password with a sudoers line, e.g. `echo \"$USER ALL=(root) NOPASSWD: "
                "/usr/bin/powermetrics\" | sudo tee /etc/sudoers.d/green-mlops` (then `sudo -n` is used)")


def parse_document(doc: bytes) -> dict[str, tuple[float, float]]:
    """One powermetrics plist → {part: (joules in the interval, watts)}; parts it lacks are left out."""
    data = plistlib.loads(doc.strip(b"\0 \t\r\n"))
    proc: dict[str, Any] = data.get("processor", {})
    gpu: dict[str, Any] = data.get("gpu", {})
    elapsed_s = float(data.get("elapsed_ns", 0)) / 1e9
    out: dict[str, tuple[float, float]] = {}
    for part, _, e_key, p_key in PARTS:
        energy_mJ = proc.get(e_key, gpu.get(e_key) if part == "gpu" else None)
        power_mW = proc.get(p_key, gpu.get(p_key) if part == "gpu" else None)
        if energy_mJ is None and power_mW is not None and elapsed_s > 0:
            energy_mJ = float(power_mW) * elapsed_s
        if power_mW is None and energy_mJ is not None and elapsed_s > 0:
            power_mW = float(energy_mJ) / elapsed_s
        if energy_mJ is not None:
            out[part] = (float(energy_mJ) / 1e3, float(power_mW) / 1e3 if power_mW is not None else math.nan)
    return out


class Powermetrics:
    """The powermetrics process the parts share: running totals (J) and the latest power (W) per part."""

    def __init__(self, command: Sequence[str] | None) -> None:
        self.command = list(command) if command else None
        self.totals = {p[0]: 0.0 for p in PARTS}
        self.power = {p[0]: math.nan for p in PARTS}
        self.documents = 0
        self.error: str | None = None
        self.bad: list[str] = []
        self.users = 0
        self._buf = b""
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process once (the first read); its output is read on a daemon thread."""
        if self._proc is not None or self.command is None:
            return
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        threading.Thread(target=self._pump, name="green-mlops-powermetrics", daemon=True).start()

    def _pump(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            self.feed(chunk)
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        self.error = f"powermetrics exited ({proc.wait()}){': ' + err if err else ''}"

    def feed(self, data: bytes) -> None:
        """Add output bytes; every complete (NUL-terminated) document is counted."""
        self._buf += data
        *docs, self._buf = self._buf.split(b"\0")
        for doc in docs:
            if not doc.strip():
                continue
            try:
                parts = parse_document(doc)
            except Exception as exc:  # a malformed document is reported, not fatal
                self.bad.append(f"skipped an unreadable powermetrics document ({exc}); its energy is missing")
                continue
            with self._lock:
                for part, (joules, watts) in parts.items():
                    self.totals[part] += joules
                    self.power[part] = watts
                self.documents += 1

    def snapshot(self, part: str) -> tuple[int, float, float]:
        with self._lock:
            return self.documents, self.totals[part], self.power[part]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


class AppleSiliconPart(PowerSource):
    """CPU, GPU or ANE of an Apple silicon chip; energy anchors are powermetrics' summed intervals."""

    def __init__(self, reader: Powermetrics, part: str, domain: Domain, interval_ms: int) -> None:
        self.reader, self.part = reader, part
        reader.users += 1
        self.anchor_lag_s = interval_ms / 2000  # a document describes the interval that ended at its arrival
        what = {"cpu": "CPU clusters", "gpu": "GPU", "ane": "Neural Engine (counted with the accelerators)"}[part]
        self.info = SourceInfo(part, domain, "measured", METHOD,
                               f"Apple silicon {what}: {part}_energy summed from `powermetrics --samplers "
                               f"cpu_power,gpu_power,ane_power -f plist -i {interval_ms}` (a root subprocess)")
        self._seen = -1
        self.warnings: list[str] = []

    def read(self, tick: Tick) -> Reading:
        self.reader.start()
        while self.reader.bad:
            self.warnings.append(self.reader.bad.pop(0))
        docs, total, watts = self.reader.snapshot(self.part)
        if self.reader.error and docs <= max(self._seen, 0):  # exited, nothing new to read
            raise SourceError(f"{self.part}: {self.reader.error}")
        if docs == self._seen or docs == 0:
            return Reading(power_W=watts)
        self._seen = docs
        return Reading(power_W=watts, energy_J=total)

    def close(self) -> None:
        self.reader.users -= 1
        if self.reader.users <= 0:
            self.reader.stop()


def _command(interval_ms: int, euid: int) -> tuple[list[str] | None, str]:
    """The command line to run, or None and why not."""
    binary = shutil.which("powermetrics") or "/usr/bin/powermetrics"
    args = [binary, "--samplers", "cpu_power,gpu_power,ane_power", "-f", "plist", "-i", str(interval_ms)]
    if euid == 0:
        return args, "running as root"
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "-l", binary], capture_output=True, timeout=10).returncode == 0:
        return [sudo, "-n", *args], "through `sudo -n` (a sudoers line allows it)"
    return None, SUDOERS_HINT


def discover_apple(settings: Settings, command: Sequence[str] | None = None, system: str | None = None,
                   machine: str | None = None) -> Discovery:
    """On an Apple silicon Mac, the CPU, GPU and ANE sources; elsewhere nothing (no noise)."""
    del settings  # no setting applies yet; the signature matches the other sources
    found = Discovery()
    if (system or platform.system()) != "Darwin":
        return found
    if (machine or platform.machine()) != "arm64":
        found.findings.append(Finding("cpu", "absent", METHOD, "Intel Mac: powermetrics has no per-part "
                                      "energy here that green_mlops reads"))
        return found
    how = "given command"
    if command is None:
        try:
            cmd, how = _command(INTERVAL_MS, os.geteuid())
        except (OSError, subprocess.SubprocessError) as exc:
            cmd, how = None, f"cannot check sudo for powermetrics: {exc}"
        if cmd is None:
            for comp in ("cpu", "gpu"):
                found.findings.append(Finding(comp, "absent", METHOD, how))
            return found
        command = cmd
    reader = Powermetrics(command)
    for part, domain, _, _ in PARTS:
        src = AppleSiliconPart(reader, part, domain, INTERVAL_MS)
        found.sources.append(src)
        found.findings.append(Finding(part, "measured", METHOD, f"{src.info.detail}, {how}"))
    return found
