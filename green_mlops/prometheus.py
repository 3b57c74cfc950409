"""A Prometheus endpoint for an :class:`~green_mlops.meter.EnergyMeter`: energy counters and power gauges.

    meter = EnergyMeter(exporters=[PrometheusExporter(9464)])   # http://127.0.0.1:9464/metrics

Serves, per power source (labels ``device``, ``domain``, ``provenance``, ``method``):

* ``green_mlops_energy_joules_total`` — a counter: energy since ``meter.start()`` (gross, idle included),
  up to each source's last counter read (energy no later sample revises), so it never goes down;
* ``green_mlops_power_watts`` — a gauge: mean power over the last second of samples.

The numbers are read from the meter's trace at scrape time by a custom collector in the exporter's own
``CollectorRegistry`` (not the process-wide one), so nothing runs between scrapes. It listens on
127.0.0.1 unless told otherwise, and stops when the meter stops. Needs ``green-mlops[prometheus]``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from green_mlops.argtypes import check_seconds
from green_mlops.extras import require

if TYPE_CHECKING:
    from green_mlops.meter import EnergyMeter

__all__ = ["DEFAULT_ADDR", "PrometheusExporter"]

DEFAULT_ADDR = "127.0.0.1"
LABELS = ("device", "domain", "provenance", "method")


class PrometheusExporter:
    """Serve a meter's energy and power on ``http://addr:port/metrics`` while it runs (port 0: a free one)."""

    def __init__(self, port: int, addr: str = DEFAULT_ADDR, *, power_window_s: float = 1.0) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"Prometheus port must be a whole number from 1 to 65535 (0 picks a free one), "
                             f"e.g. 9464; got {port!r}")
        check_seconds("power_window_s", power_window_s, positive=True, example="1")
        require("prometheus")  # now, before any training: the error names the pip install line
        self.port = port
        self.addr = addr
        self.power_window_s = float(power_window_s)
        self._server: Any = None

    @property
    def url(self) -> str:
        """Where Prometheus should scrape."""
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def attach(self, meter: EnergyMeter) -> None:
        """Start serving ``meter``; raises ValueError naming the fix when the address cannot be bound."""
        from prometheus_client import start_http_server
        from prometheus_client.registry import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_MeterCollector(meter, self.power_window_s))
        try:
            self._server, _thread = start_http_server(self.port, addr=self.addr, registry=registry)
        except OSError as exc:
            raise ValueError(f"cannot serve Prometheus metrics on {self.addr}:{self.port}: "
                             f"{exc.strerror or exc}; choose another port (0 picks a free one)") from None
        self.port = self._server.server_port

    def close(self) -> None:
        """Stop serving; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class _MeterCollector:
    """A prometheus_client custom collector: reads the meter's trace on every scrape."""

    def __init__(self, meter: EnergyMeter, window_s: float) -> None:
        self.meter = meter
        self.window_s = window_s

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        energy = CounterMetricFamily("green_mlops_energy_joules",
                                     "Energy since the meter started, per power source (idle included)",
                                     labels=LABELS)
        power = GaugeMetricFamily("green_mlops_power_watts",
                                  "Mean power over the last second of samples, per power source", labels=LABELS)
        meter = self.meter
        start = meter.start_time
        end = meter.end_time if meter.end_time is not None else meter.trace.last_time()
        if start is not None and end is not None and end > start:
            since = max(start, end - self.window_s)
            for s in meter.sources:
                curve = meter.trace.curve(s.info.name)
                final = min(end, curve.final_until)  # the last counter read: energy no later sample revises
                e_start, e_final, e_since, e_end = (float(v) for v in curve.at([start, final, since, end]))
                labels = [s.info.name, s.info.domain, s.info.provenance, s.info.method]
                if final > start and math.isfinite(e_final - e_start):  # nothing final yet: left out, not zero
                    energy.add_metric(labels, e_final - e_start)
                if end > since and math.isfinite(e_end - e_since):
                    power.add_metric(labels, (e_end - e_since) / (end - since))
        yield energy
        yield power
