"""The background thread that reads every source on a fixed interval.

The training thread never waits on a source: reads (the GPU counter costs milliseconds) happen
here. A failed read, a late tick or a stalled source is recorded as an event, never hidden.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from green_mlops.meter import host
from green_mlops.meter.source import PowerSource, Reading, SourceError, Tick
from green_mlops.meter.trace import Trace


@dataclass(frozen=True)
class MeterEvent:
    """Something that happened while sampling: a failed read, a late tick, a recovery."""

    t: float
    source: str
    kind: str
    message: str


class Sampler:
    """Reads ``sources`` every ``interval`` seconds into ``trace`` on a daemon thread."""

    def __init__(self, sources: list[PowerSource], trace: Trace, interval: float) -> None:
        self.sources = sources
        self.trace = trace
        self.interval = interval
        self.events: list[MeterEvent] = []
        self.late_ticks = 0
        self.failures: dict[str, int] = {s.info.name: 0 for s in sources}
        self._cpu = host.CpuUtilisation()
        self._last_full = {s.info.name: -float("inf") for s in sources}
        self._failing: set[str] = set()
        self._cond = threading.Condition()
        self._seq = 0
        self._wanted = 0
        self._stop = False
        self._busy = False
        self._thread: threading.Thread | None = None
        self.native_id: int | None = None

    def start(self) -> None:
        """Start the thread and return once the first (full) tick is recorded."""
        self._thread = threading.Thread(target=self._run, name="green-mlops-sampler", daemon=True)
        self._thread.start()
        self.tick_now()

    def tick_now(self) -> float:
        """Ask for an immediate full tick and wait for it; returns its time."""
        with self._cond:
            # a tick already under way started before this request: wait for the one after it
            self._wanted = max(self._wanted, self._seq + (2 if self._busy else 1))
            self._cond.notify_all()
            while self._seq < self._wanted and self._thread is not None and self._thread.is_alive():
                self._cond.wait(0.05)
        last = self.trace.last_time()
        return last if last is not None else time.monotonic()

    def request_full(self, min_age: float) -> None:
        """Ask for a full tick soon, without waiting, unless every source had one in the last ``min_age`` seconds."""
        if self._thread is None or time.monotonic() - min(self._last_full.values(), default=-math.inf) < min_age:
            return
        with self._cond:
            self._wanted = max(self._wanted, self._seq + (2 if self._busy else 1))
            self._cond.notify_all()

    def stop(self) -> None:
        """Take a final full tick, then end the thread."""
        if self._thread is None:
            return
        self.tick_now()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        self._thread = None

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        next_t = time.monotonic()
        while True:
            with self._cond:
                while not self._stop and self._wanted <= self._seq and time.monotonic() < next_t:
                    self._cond.wait(max(next_t - time.monotonic(), 0.0))
                if self._stop:
                    return
                forced = self._wanted > self._seq
                self._busy = True
            self._tick(forced)
            with self._cond:
                self._busy = False
                self._seq += 1
                self._cond.notify_all()
            next_t += self.interval
            now = time.monotonic()
            if now > next_t + self.interval / 2:
                self.late_ticks += 1
                if self.late_ticks in (1, 10, 100, 1000):
                    self._event(now, "*", "late", f"sampler fell behind by {now - next_t:.3f} s "
                                f"({self.late_ticks} late ticks so far); energy stays exact, curves coarser")
                next_t = now

    def _tick(self, forced: bool) -> None:
        t = time.monotonic()
        util = self._cpu.sample()
        tick_by_full = {}
        readings: dict[str, Reading | None] = {}
        for src in self.sources:
            name = src.info.name
            full = forced or t - self._last_full[name] >= src.counter_interval - self.interval / 2
            tick = tick_by_full.get(full)
            if tick is None:
                tick = tick_by_full[full] = Tick(t=t, full=full, cpu_util=util, cpu_count=len(self._cpu.cpus))
            try:
                readings[name] = src.read(tick)
            except SourceError as exc:
                readings[name] = None
                self.failures[name] += 1
                if name not in self._failing:
                    self._failing.add(name)
                    self._event(t, name, "read-failed", str(exc))
                continue
            except Exception as exc:  # a broken source must not kill the sampler
                readings[name] = None
                self.failures[name] += 1
                if name not in self._failing:
                    self._failing.add(name)
                    self._event(t, name, "read-failed", f"{type(exc).__name__}: {exc}")
                continue
            notes = getattr(src, "warnings", None)
            while notes:
                self._event(t, name, "warning", notes.pop(0))
            if full:
                self._last_full[name] = t
            if name in self._failing:
                self._failing.discard(name)
                self._event(t, name, "recovered", f"{name} readable again after {self.failures[name]} failed reads")
        extras = {"host.cpu_util_pct": util * 100}
        try:
            extras["host.mem_used_B"] = host.memory_used_bytes()
        except Exception:
            pass
        self.trace.append(t, readings, extras)

    def _event(self, t: float, source: str, kind: str, message: str) -> None:
        self.events.append(MeterEvent(t, source, kind, message))
