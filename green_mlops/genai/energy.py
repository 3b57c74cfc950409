"""Energy of a span of wall-clock time, from where the server runs: this machine's meter or a server trace.

Both give an :class:`~green_mlops.meter.EnergyResult` per span, per device, with provenance and net of
the idle baseline. The load generator records wall-clock times; the local meter converts them to its
own clock exactly, a server trace (``green-mlops measure --trace``) is joined by time, its clock
``clock_offset_s`` ahead of the client's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from green_mlops.meter import EnergyMeter, EnergyResult, SourceEnergy, SourceInfo


class TraceError(ValueError):
    """A server trace that cannot be joined; the message says what is missing and how to record it."""


class EnergySource(Protocol):
    """Energy over wall-clock spans, per device, net of an idle baseline where one was measured."""

    description: str

    def span(self, start: float, end: float, name: str) -> EnergyResult:
        """Energy between two wall-clock times (epoch seconds)."""


class LocalEnergy:
    """Energy from this machine's :class:`EnergyMeter` (the server runs here)."""

    description = "local meter (the server runs on this machine)"

    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter

    @property
    def wall_offset(self) -> float:
        return self.meter.trace.wall_offset

    def span(self, start: float, end: float, name: str) -> EnergyResult:
        return self.meter.energy(start - self.wall_offset, end - self.wall_offset, name)


@dataclass
class _Column:
    info: SourceInfo
    energy: np.ndarray


class TraceEnergy:
    """Energy from a power trace written on the server host by ``green-mlops measure --trace FILE``.

    Cumulative energy is interpolated linearly between the trace's ticks (0.1 s apart by default).
    The idle baseline is the trace's mean power per device over ``idle`` (the client's idle window,
    when it sent nothing), so no separate idle measurement on the server is needed.
    """

    def __init__(self, path: str | Path, *, idle: tuple[float, float] | None = None,
                 clock_offset_s: float = 0.0) -> None:
        self.path = Path(path)
        self.clock_offset_s = float(clock_offset_s)
        self.description = f"server trace {self.path.name} (joined by time, server clock {clock_offset_s:+g} s)"
        self.time, self.columns = read_trace(self.path)
        self.idle_power_W: dict[str, float] | None = None
        if idle is not None and idle[1] > idle[0]:
            self._check_covers(*idle, "the idle window")
            self.idle_power_W = {name: float(np.diff(self._at(c, idle))[0]) / (idle[1] - idle[0])
                                 for name, c in self.columns.items()}

    def _at(self, column: _Column, times: tuple[float, float]) -> np.ndarray:
        when = np.asarray(times, dtype=float) + self.clock_offset_s
        return np.interp(when, self.time, column.energy)

    def _check_covers(self, start: float, end: float, what: str) -> None:
        lo, hi = self.time[0] - self.clock_offset_s, self.time[-1] - self.clock_offset_s
        if start < lo - 1e-6 or end > hi + 1e-6:
            raise TraceError(
                f"{self.path} covers {_clock(lo)}–{_clock(hi)} (client clock) but {what} runs {_clock(start)}–"
                f"{_clock(end)}; start `green-mlops measure --trace FILE -- sleep N` on the server before the "
                "sweep, with N long enough to outlast it (or fix --clock-offset if the clocks differ)")

    def span(self, start: float, end: float, name: str) -> EnergyResult:
        self._check_covers(start, end, f"span {name!r}")
        parts = []
        for source, column in self.columns.items():
            e0, e1 = self._at(column, (start, end))
            idle = self.idle_power_W.get(source) if self.idle_power_W else None
            parts.append(SourceEnergy(column.info, float(e1 - e0), end - start, idle))
        return EnergyResult(name, start, end, parts, 0.0, [f"joined from {self.path.name}"])


def read_trace(path: Path) -> tuple[np.ndarray, dict[str, _Column]]:
    """Wall-clock times and each device's cumulative energy (J) and provenance from a trace file."""
    if not path.is_file():
        raise TraceError(f"server trace {str(path)!r} does not exist; write one on the server host with "
                         "`green-mlops measure --trace server_trace.parquet -- sleep N` and copy it here")
    import pandas as pd

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = (table.schema.metadata or {}).get(b"green_mlops.sources")
        sources = json.loads(meta) if meta else {}
        df = table.to_pandas()
    else:
        sources = {}
        with path.open() as fh:
            for line in fh:
                if not line.startswith("# "):
                    break
                name, _, rest = line[2:].partition(": ")
                domain, provenance, method = (x.strip() for x in rest.split(",", 2))
                sources[name] = {"name": name, "domain": domain, "provenance": provenance, "method": method}
        df = pd.read_csv(path, comment="#")
    if "time" not in df.columns or len(df) < 2:
        raise TraceError(f"{path} is not a green-mlops power trace with at least two ticks "
                         "(expected a 'time' column and '<device>.energy_J' columns)")
    names = [c.removesuffix(".energy_J") for c in df.columns if c.endswith(".energy_J")]
    if not names:
        raise TraceError(f"{path} has no '<device>.energy_J' columns; write it with `green-mlops measure --trace`")
    columns = {}
    for name in names:
        info = sources.get(name) or {}
        columns[name] = _Column(SourceInfo(name, info.get("domain", _guess_domain(name)),
                                           info.get("provenance", "measured"), info.get("method", "unknown"),
                                           info.get("detail", "")),
                                df[f"{name}.energy_J"].to_numpy(dtype=float))
    time = df["time"].to_numpy(dtype=float)
    order = np.argsort(time, kind="stable")
    return time[order], {n: _Column(c.info, np.nan_to_num(c.energy[order])) for n, c in columns.items()}


def _guess_domain(name: str) -> str:
    return next((d for d in ("gpu", "cpu", "dram") if name.startswith(d)), "cpu")


def _clock(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")
