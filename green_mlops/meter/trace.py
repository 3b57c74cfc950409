"""The columnar record of every sampler tick: times, each source's power and counter anchors, telemetry.

Appends come from the sampler thread, reads from any thread; both take a short lock. Energy
columns are integrated on demand (:mod:`green_mlops.meter.integrate`) and cached per row count.
"""
from __future__ import annotations

import math
import threading
from array import array
from pathlib import Path

import numpy as np

from green_mlops.meter.integrate import EnergyCurve, integrate, merge_curve
from green_mlops.meter.source import Reading, SourceInfo


class Trace:
    """Samples of a fixed set of sources; ``t`` is ``time.monotonic()`` seconds."""

    def __init__(self, sources: list[SourceInfo], wall_offset: float, lags: dict[str, float] | None = None) -> None:
        self.sources = list(sources)
        self.wall_offset = wall_offset
        self.lags = dict(lags or {})
        self._lock = threading.Lock()
        self._t = array("d")
        self._power = {s.name: array("d") for s in sources}
        self._anchor = {s.name: array("d") for s in sources}
        self._curve_t = {s.name: array("d") for s in sources}
        self._curve_p = {s.name: array("d") for s in sources}
        self._extras: dict[str, array] = {}
        self._curves: dict[str, tuple[int, EnergyCurve]] = {}

    def __len__(self) -> int:
        return len(self._t)

    def append(self, t: float, readings: dict[str, Reading | None], extras: dict[str, float]) -> None:
        """Record one tick; a source missing from ``readings`` (or None) failed this tick."""
        with self._lock:
            n = len(self._t)
            self._t.append(t)
            for name in self._power:
                r = readings.get(name)
                self._power[name].append(r.power_W if r is not None else math.nan)
                e = r.energy_J if r is not None else None
                self._anchor[name].append(math.nan if e is None else e)
                if r is not None and r.curve:
                    ct, cp = self._curve_t[name], self._curve_p[name]
                    for when, watts in r.curve:
                        if not len(ct) or when > ct[-1]:
                            ct.append(when)
                            cp.append(watts)
                if r is not None:
                    extras = {**r.extras, **extras}
            for key, value in extras.items():
                col = self._extras.get(key)
                if col is None:
                    col = self._extras[key] = array("d", [math.nan] * n)
                col.append(value)
            for col in self._extras.values():
                if len(col) < n + 1:
                    col.append(math.nan)

    def last_time(self) -> float | None:
        with self._lock:
            return self._t[-1] if len(self._t) else None

    def times(self) -> np.ndarray:
        with self._lock:
            return np.array(self._t)

    def curve(self, name: str) -> EnergyCurve:
        """The cumulative energy curve of one source over all ticks so far."""
        with self._lock:
            n = len(self._t)
            cached = self._curves.get(name)
            if cached and cached[0] == n:
                return cached[1]
            t = np.array(self._t)
            p = np.array(self._power[name])
            a = np.array(self._anchor[name])
            ct = np.array(self._curve_t[name])
            cp = np.array(self._curve_p[name])
        lag = self.lags.get(name, 0.0)
        c = integrate(*merge_curve(t, p, a, ct, cp, lag)) if (len(ct) >= 2 or lag) else integrate(t, p, a)
        with self._lock:
            self._curves[name] = (n, c)
        return c

    def to_frame(self):  # -> pandas.DataFrame
        """One row per tick: time, each source's power and cumulative energy, and telemetry."""
        import pandas as pd

        with self._lock:
            t = np.array(self._t)
            extras = {k: np.array(v) for k, v in self._extras.items()}
        cols: dict[str, np.ndarray] = {}
        t0 = t[0] if len(t) else 0.0
        cols["time"] = t + self.wall_offset
        cols["t_s"] = t - t0
        for s in self.sources:
            c = self.curve(s.name)
            cols[f"{s.name}.power_W"] = c.power_at(t)
            cols[f"{s.name}.energy_J"] = c.at(t) - (c.at(t[0]) if len(t) else 0.0)
        for key in sorted(extras):
            cols[key] = extras[key][: len(t)]
        df = pd.DataFrame(cols)
        df.attrs["sources"] = {s.name: s.as_dict() for s in self.sources}
        return df

    def export(self, path: str | Path) -> Path:
        """Write the trace as Parquet (``.parquet``) or CSV (anything else); provenance travels along."""
        path = Path(path)
        df = self.to_frame()
        if path.suffix == ".parquet":
            import json

            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            meta = {**(table.schema.metadata or {}), b"green_mlops.sources": json.dumps(df.attrs["sources"]).encode()}
            pq.write_table(table.replace_schema_metadata(meta), path)
        else:
            with path.open("w") as fh:
                for s in self.sources:
                    fh.write(f"# {s.name}: {s.domain}, {s.provenance}, {s.method}\n")
                df.to_csv(fh, index=False)
        return path
