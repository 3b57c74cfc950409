"""``EnergyMeter``: start a background sampler, mark named windows, read energy with provenance.

Usage::

    meter = EnergyMeter(interval=0.1)
    meter.measure_idle(5)                 # the paper's idle baseline (optional)
    with meter:
        with meter.window("epoch 1"):
            train_one_epoch()
    print(meter.result())                 # per source and total, gross and net of idle
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from green_mlops.meter.checks import check_seconds
from green_mlops.meter.discovery import discover
from green_mlops.meter.result import EnergyResult, SourceEnergy
from green_mlops.meter.sampler import MeterEvent, Sampler
from green_mlops.meter.settings import Settings
from green_mlops.meter.source import Finding, PowerSource
from green_mlops.meter.trace import Trace

MIN_INTERVAL_S = 0.001
MAX_INTERVAL_S = 60.0
#: Window edges ask for a counter anchor unless one was read this recently: windows opened every step cost no
#: more counter reads than the 0.5 s cadence the counter once had.
ANCHOR_MIN_AGE_S = 0.5


@dataclass
class Window:
    """A named span of the run; ``result()`` gives its energy once it has ended."""

    name: str
    start: float
    parent: Window | None = None
    end: float | None = None
    _meter: EnergyMeter | None = field(default=None, repr=False)

    @property
    def depth(self) -> int:
        return 0 if self.parent is None else self.parent.depth + 1

    @property
    def path(self) -> str:
        return self.name if self.parent is None else f"{self.parent.path}/{self.name}"

    def result(self) -> EnergyResult:
        if self.end is None or self._meter is None:
            raise RuntimeError(f"window {self.name!r} has not ended yet")
        return self._meter.energy(self.start, self.end, self.name)


def validate_interval(interval: float) -> float:
    """The sampling interval in seconds, or a ValueError that says what is allowed."""
    try:
        value = float(interval)
    except (TypeError, ValueError):
        raise ValueError(f"interval must be a number of seconds, e.g. 0.1; got {interval!r}") from None
    if not (MIN_INTERVAL_S <= value <= MAX_INTERVAL_S) or math.isnan(value):
        raise ValueError(f"interval must be between {MIN_INTERVAL_S} and {MAX_INTERVAL_S} seconds "
                         f"(0.1 is a good default); got {interval!r}")
    return value


class MeterExporter(Protocol):
    """Something that publishes a meter's readings (e.g. :class:`green_mlops.prometheus.PrometheusExporter`)."""

    def attach(self, meter: EnergyMeter) -> None: ...  # called by the meter's constructor: fail early
    def close(self) -> None: ...  # called once by stop(), after the final read


class EnergyMeter:
    """Meters GPU, CPU and DRAM energy from a background thread; the caller only marks time."""

    def __init__(self, interval: float = 0.1, *, sources: Sequence[PowerSource] | None = None,
                 settings: Settings | None = None, name: str = "run",
                 exporters: Sequence[MeterExporter] = ()) -> None:
        self.interval = validate_interval(interval)
        self.name = name
        self.findings: list[Finding] = []
        if sources is None:
            found = discover(settings or Settings.from_env())
            sources, self.findings = found.sources, found.findings
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("EnergyMeter needs at least one power source; run `green-mlops hardware` to see why none was found")
        names = [s.info.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"power source names must be unique; got {names}")
        self.trace = Trace([s.info for s in self.sources], wall_offset=time.time() - time.monotonic(),
                           lags={s.info.name: s.anchor_lag_s for s in self.sources})
        self._sampler = Sampler(self.sources, self.trace, self.interval)
        self._state = "new"
        self.start_time: float | None = None
        self.end_time: float | None = None
        self.idle: EnergyResult | None = None
        self.windows: list[Window] = []
        self._local = threading.local()
        self.exporters: list[MeterExporter] = []
        for exporter in exporters:
            try:
                exporter.attach(self)
            except BaseException:
                for attached in self.exporters:  # one that cannot start leaves none of the others serving
                    attached.close()
                raise
            self.exporters.append(exporter)

    # -- life cycle -------------------------------------------------------------------------
    def _ensure_sampling(self) -> None:
        if self._state == "stopped":
            raise RuntimeError("this EnergyMeter has stopped; create a new one for another run")
        if self._state == "new":
            self._sampler.start()
            self._state = "sampling"

    @property
    def running(self) -> bool:
        return self.start_time is not None and self.end_time is None

    def start(self) -> EnergyMeter:
        """Begin the run: starts sampling (if idle measurement has not) and anchors every counter."""
        if self.start_time is not None:
            raise RuntimeError("EnergyMeter.start() was already called")
        self._ensure_sampling()
        self.start_time = self._sampler.tick_now()
        return self

    def stop(self) -> EnergyResult:
        """End the run with a final counter read, stop the thread, and return the run's energy."""
        if self.start_time is None:
            raise RuntimeError("EnergyMeter.stop() called before start()")
        if self.end_time is None:
            self.end_time = self._sampler.tick_now()
            self._sampler.stop()
            self._state = "stopped"
            for s in self.sources:
                try:
                    s.close()
                except Exception:  # closing must not lose the result
                    pass
            for exporter in self.exporters:
                try:
                    exporter.close()
                except Exception:  # an exporter must not lose the result either
                    pass
        return self.result()

    def __enter__(self) -> EnergyMeter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __del__(self) -> None:
        if getattr(self, "_state", "") == "sampling":
            self._sampler.stop()

    # -- idle baseline and windows --------------------------------------------------------------
    def measure_idle(self, seconds: float, stop: threading.Event | None = None) -> EnergyResult | None:
        """Sample for ``seconds`` (less if ``stop`` is set) with nothing else running; its mean power becomes the baseline.

        Net energy of any span is then gross − idle power × duration (the paper's Eq. 1, 2).
        """
        seconds = check_seconds("idle time", seconds, example="5")
        if seconds == 0:
            return None
        self._ensure_sampling()
        t0 = self._sampler.tick_now()
        if stop is None:
            time.sleep(seconds)
        else:
            stop.wait(seconds)
        t1 = self._sampler.tick_now()
        self.idle = self._span(t0, t1, "idle", with_idle=False)
        return self.idle

    @property
    def idle_power_W(self) -> dict[str, float] | None:
        """Idle power per source from :meth:`measure_idle`, or None without a baseline."""
        if self.idle is None:
            return None
        return {s.info.name: s.mean_power_W for s in self.idle.sources}

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        """Mark a named span; windows nest, and each one's energy is ``window.result()``."""
        if self.start_time is None:
            raise RuntimeError("start the meter (`with meter:` or meter.start()) before opening a window")
        stack: list[Window] = self._local.__dict__.setdefault("stack", [])
        w = Window(name, time.monotonic(), stack[-1] if stack else None, _meter=self)
        self.anchor()
        stack.append(w)
        try:
            yield w
        finally:
            w.end = time.monotonic()
            self.anchor()
            stack.pop()
            self.windows.append(w)

    def anchor(self) -> None:
        """Ask for a counter read now, without waiting, so a span that starts or ends here is anchored near it.

        Counters are otherwise read every ``gpu_counter_interval``; a read of a span that ends after the last
        tick (``energy()``, ``stop()``) already forces one. At most one request per ``ANCHOR_MIN_AGE_S``.
        """
        if self._state == "sampling":
            self._sampler.request_full(ANCHOR_MIN_AGE_S)

    # -- results -----------------------------------------------------------------------------------
    @staticmethod
    def now() -> float:
        """The meter's clock (``time.monotonic()``), for callers that mark their own spans."""
        return time.monotonic()

    def energy(self, start: float, end: float, name: str = "span") -> EnergyResult:
        """Energy between two ``now()`` times, per source, net of idle when a baseline exists."""
        if end < start:
            raise ValueError(f"span {name!r} ends ({end}) before it starts ({start})")
        last = self.trace.last_time()
        if self._state == "sampling" and (last is None or end > last):
            self._sampler.tick_now()
        return self._span(start, end, name, with_idle=True)

    def _span(self, start: float, end: float, name: str, with_idle: bool) -> EnergyResult:
        idle = self.idle_power_W if with_idle else None
        parts = []
        for s in self.sources:
            c = self.trace.curve(s.info.name)
            e0, e1 = c.at([start, end])
            parts.append(SourceEnergy(s.info, float(e1 - e0), end - start,
                                      idle.get(s.info.name) if idle else None,
                                      final=self._state == "stopped" or end <= c.final_until + 1e-9,
                                      gap_s=c.gap_between(start, end)))
        notes = [f"{p.info.name}: {p.gap_s:.2f} s of power interpolated over failed reads"
                 for p in parts if p.gap_s > 0]
        return EnergyResult(name, start, end, parts, self.trace.wall_offset, notes + self.event_lines(start, end))

    def cumulative(self, times: Sequence[float] | np.ndarray) -> dict[str, np.ndarray]:
        """Cumulative energy (J, on each source's own zero) of every source at the given times.

        Vectorised: the cost of attributing energy to thousands of training steps at once.
        """
        when = np.asarray(times, dtype=float)
        return {s.info.name: self.trace.curve(s.info.name).at(when) for s in self.sources}

    def final_until(self) -> float:
        """Energy before this time is final: every source has a counter read (or sample) after it."""
        if not len(self.trace):
            return -math.inf
        return min(self.trace.curve(s.info.name).final_until for s in self.sources)

    def result(self) -> EnergyResult:
        """The whole run so far (start to stop, or to now while running)."""
        if self.start_time is None:
            raise RuntimeError("the meter has not been started")
        end = self.end_time if self.end_time is not None else time.monotonic()
        return self.energy(self.start_time, end, self.name)

    def sampler_cpu_seconds(self) -> float | None:
        """CPU time the sampler thread has used so far (its whole cost to the process), if knowable."""
        tid = self._sampler.native_id
        try:
            import psutil

            return next((t.user_time + t.system_time for t in psutil.Process().threads() if t.id == tid), None)
        except (ImportError, OSError):
            return None

    @property
    def events(self) -> list[MeterEvent]:
        return list(self._sampler.events)

    def event_lines(self, start: float = -math.inf, end: float = math.inf) -> list[str]:
        base = self.start_time or 0.0
        return [f"t={e.t - base:+.2f}s {e.source} {e.kind}: {e.message}"
                for e in self._sampler.events if start <= e.t <= end]

    def to_frame(self):  # -> pandas.DataFrame
        """The trace as a DataFrame (one row per tick)."""
        return self.trace.to_frame()

    def export_trace(self, path: str | Path) -> Path:
        """Write the trace to Parquet (``.parquet``) or CSV (any other suffix)."""
        return self.trace.export(path)
