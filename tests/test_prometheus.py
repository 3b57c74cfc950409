"""The Prometheus endpoint, scraped over HTTP during real metered runs (a fake GPU at the NVML edge)."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from green_mlops.meter import EnergyMeter, Settings
from green_mlops.meter.nvml import discover_nvml
from green_mlops.prometheus import PrometheusExporter
from tests.fake_nvml import FakeGpu, install

ROOT = Path(__file__).resolve().parents[1]


def scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_meter_serves_energy_counters_and_power_gauges(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 250.0)])
    exporter = PrometheusExporter(0)
    # the counter serves energy up to the last counter read (every 5 s by default): read it every 0.5 s here
    meter = EnergyMeter(0.02, sources=discover_nvml(Settings(gpu_counter_interval=0.5), env={}).sources,
                        exporters=[exporter])
    assert exporter.url.startswith("http://127.0.0.1:")
    assert scrape(exporter.url)["green_mlops_energy_joules"] == []  # not started: nothing, not a zero
    with meter:
        time.sleep(0.7)
        first = scrape(exporter.url)
        time.sleep(0.6)
        second = scrape(exporter.url)
    (e1,), (e2,) = first["green_mlops_energy_joules"], second["green_mlops_energy_joules"]
    assert e1.name == "green_mlops_energy_joules_total"
    assert e1.labels == {"device": "gpu0", "domain": "gpu", "provenance": "measured",
                         "method": meter.sources[0].info.method}
    assert 0 < e1.value < e2.value <= meter.result().total_J + 1e-6  # a counter: it only grows
    (p,) = second["green_mlops_power_watts"]
    assert p.labels["device"] == "gpu0" and p.value == pytest.approx(250.0, rel=0.1)
    with pytest.raises(urllib.error.URLError):  # stopped with the meter
        scrape(exporter.url)


def test_busy_port_is_refused_before_the_run(monkeypatch):
    install(monkeypatch, [FakeGpu()])
    first = PrometheusExporter(0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ValueError, match="choose another port"):
            EnergyMeter(0.02, sources=discover_nvml(Settings(), env={}).sources,
                        exporters=[first, PrometheusExporter(taken.getsockname()[1])])
    with pytest.raises(urllib.error.URLError):  # the one that had started is closed again
        scrape(first.url)
    with pytest.raises(ValueError, match="1 to 65535"):
        PrometheusExporter(70000)


def test_cli_measure_serves_prometheus_while_the_command_runs():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "green_mlops", "measure", "--interval", "0.05", "--output", "-",
                          "--prometheus-port", str(port), "--", sys.executable, "-c", "import time; time.sleep(4)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        families = None
        for _ in range(100):
            try:
                families = scrape(f"http://127.0.0.1:{port}/metrics")
                if families["green_mlops_energy_joules"]:
                    break
            except urllib.error.URLError:
                pass
            time.sleep(0.1)
        assert families and families["green_mlops_energy_joules"], "no energy served while the command ran"
        assert {s.labels["provenance"] for s in families["green_mlops_energy_joules"]} <= {"measured", "estimated"}
        assert all(s.value > 0 for s in families["green_mlops_energy_joules"])
    finally:
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert re.search(rf"Prometheus .*127\.0\.0\.1:{port}/metrics", err)
    assert '"exit_code": 0' in out  # --output -: the JSON summary on stdout
