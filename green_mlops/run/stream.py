"""Turn (step, time) marks into per-step power and cumulative energy metrics, off the hot path.

The training thread only calls :meth:`EnergyStream.mark` (a deque append). A background thread
waits until the meter's data past a mark is final, attributes energy to each step by time (so a
step shorter than the sampling interval still gets its share), and hands the metrics to a sink.
Metric names are the per-step ones of :mod:`green_mlops.names`: ``power/{device}_W``, ``power/total_W``,
``energy/{gpu,cpu,dram,total}_J`` (cumulative since the origin) and ``energy/net_J`` (minus the idle baseline).
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from green_mlops import names
from green_mlops.meter import EnergyMeter

log = logging.getLogger(__name__)

StepMetrics = tuple[int, int, dict[str, float]]  # (step, timestamp in ms, metrics)
Sink = Callable[[Sequence[StepMetrics]], None]


class StepBlock(Sequence):
    """A batch of :data:`StepMetrics` held as arrays: ``keys``, ``steps`` and ``times_ms`` (one per step) and
    ``values`` (steps × keys). A sink that takes them whole (an MLflow writer ships them packed) never makes a
    Python object per metric; read as a sequence, it builds each step's tuple and dict when asked for it."""

    __slots__ = ("keys", "steps", "times_ms", "values")

    def __init__(self, keys: list[str], steps: np.ndarray, times_ms: np.ndarray, values: np.ndarray) -> None:
        self.keys, self.steps, self.times_ms, self.values = keys, steps, times_ms, values

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i):  # int -> StepMetrics, slice -> list[StepMetrics]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return int(self.steps[i]), int(self.times_ms[i]), dict(zip(self.keys, self.values[i].tolist()))

    def __iter__(self) -> Iterator[StepMetrics]:
        rows = (dict(zip(self.keys, row)) for row in self.values.tolist())
        return zip(self.steps.tolist(), self.times_ms.tolist(), rows)


#: Per-step numbers are rounded to the meters' resolution before they are logged: NVML reports power in mW
#: and energy in mJ, RAPL counts µJ but is read every ~0.1 s. Finer digits are float noise from dividing
#: interpolated energy by step time (a constant model estimate came out as 3.1999999999999997 W, drawn jagged).
POWER_DECIMALS = 3  # 1 mW
ENERGY_DECIMALS = 3  # 1 mJ


_Mark = tuple[int, float]  # (step, monotonic time it ended): a plain tuple, the cheapest thing to append


def metric_names(meter: EnergyMeter) -> list[str]:
    """Every per-step metric this meter's sources produce."""
    out = [names.power(s.info.name) for s in meter.sources if s.info.domain == "gpu"]
    domains = sorted({s.info.domain for s in meter.sources})
    out += [names.power(d) for d in domains if d != "gpu"] + [names.POWER_TOTAL]
    out += [names.energy(d) for d in domains] + [names.ENERGY_TOTAL]
    if meter.idle is not None:
        out.append(names.ENERGY_NET)
    return out


class EnergyStream:
    """Attributes metered energy to marked steps and delivers metrics to ``sink`` in batches."""

    def __init__(self, meter: EnergyMeter, sink: Sink, *, origin: float | None = None,
                 every_n_steps: int = 1, publish_interval: float = 1.0) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        self.meter = meter
        self.sink = sink
        self.origin = origin if origin is not None else time.monotonic()
        self.every_n_steps = every_n_steps
        self.publish_interval = publish_interval
        self.published = 0
        self._marks: collections.deque[_Mark] = collections.deque()
        self._pending: list[_Mark] = []
        self._prev_t = self.origin
        self._last_step: int | None = None
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def mark(self, step: int, t: float | None = None) -> None:
        """Record that ``step`` ended now (hot path: one deque append)."""
        self._marks.append((step, time.monotonic() if t is None else t))

    def start(self) -> EnergyStream:
        self._thread = threading.Thread(target=self._run, name="green-mlops-stream", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Publish every remaining mark (the meter should be stopped first, so all data is final)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.publish(final=True)

    #: Attribution re-reads the trace, whose length grows with the run: wait at least this many times
    #: the last publish's own duration, so it never takes more than ~5 % of a core (and of the GIL).
    COST_FACTOR = 20.0

    def _run(self) -> None:
        wait = self.publish_interval
        while not self._stop:
            self._wake.wait(wait)
            if self._stop:
                return
            t0 = time.perf_counter()
            try:
                self.publish()
            except Exception:  # a sink failure must not kill attribution
                log.exception("green_mlops: publishing energy metrics failed; will retry")
            wait = max(self.publish_interval, self.COST_FACTOR * (time.perf_counter() - t0))

    def publish(self, final: bool = False) -> int:
        """Attribute and deliver every mark whose energy is final (all of them when ``final``)."""
        with self._lock:
            while self._marks:
                self._pending.append(self._marks.popleft())
            if not self._pending:
                return 0
            limit = math.inf if final else self.meter.final_until()
            ready = [m for m in self._pending if m[1] <= limit]
            if not ready:
                return 0
            self._pending = self._pending[len(ready):]
            chosen = self._select(ready)
            if not chosen:
                return 0
            batch = self._metrics(chosen)
        self.sink(batch)
        self.published += len(batch)
        return len(batch)

    def _select(self, marks: list[_Mark]) -> list[_Mark]:
        """The last mark of each step (several batches can end one optimiser step), every n-th step."""
        out: list[_Mark] = []
        for m in marks:
            if out and out[-1][0] == m[0]:
                out[-1] = m
            elif self._last_step is not None and m[0] == self._last_step:
                continue  # that step was already published
            else:
                out.append(m)
        return [m for m in out if m[0] % self.every_n_steps == 0]

    def _metrics(self, marks: list[_Mark]) -> StepBlock:
        meter = self.meter
        times = np.array([self._prev_t, *[t for _, t in marks]])
        cum = meter.cumulative(np.concatenate([[self.origin], times]))
        idle = meter.idle_power_W
        dt = np.diff(times)
        by_domain_energy: dict[str, np.ndarray] = {}
        power: dict[str, np.ndarray] = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for s in meter.sources:
                c = cum[s.info.name]
                since = c[1:] - c[0]
                step_e = np.diff(c[1:])
                d = s.info.domain
                by_domain_energy[d] = by_domain_energy.get(d, 0) + since[1:]
                p = np.where(dt > 0, step_e / dt, np.nan)
                key = names.power(s.info.name if d == "gpu" else d)
                power[key] = power.get(key, 0) + p
                power[names.POWER_TOTAL] = power.get(names.POWER_TOTAL, 0) + p
        total = sum(by_domain_energy.values())
        energy = {names.energy(d): v for d, v in by_domain_energy.items()}
        energy[names.ENERGY_TOTAL] = total
        if idle is not None:
            energy[names.ENERGY_NET] = total - sum(idle.values()) * (times[1:] - self.origin)
        # rounded here, on this background thread, as whole arrays: the training thread pays nothing for it
        columns = [np.round(v, POWER_DECIMALS) for v in power.values()]
        columns += [np.round(v, ENERGY_DECIMALS) for v in energy.values()]
        steps = np.array([s for s, _ in marks], dtype=np.int64)
        times_ms = ((times[1:] + meter.trace.wall_offset) * 1000).astype(np.int64)  # truncated, as int() does
        self._last_step, self._prev_t = marks[-1]
        return StepBlock([*power, *energy], steps, times_ms, np.column_stack(columns))
