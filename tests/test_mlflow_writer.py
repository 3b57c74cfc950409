"""MetricWriter against real MLflow stores: SQLite, and a tracking server that goes away and comes back."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from green_mlops.mlflow import MetricWriter, sync
from tests.mlflow_server import MlflowServer

ROOT = Path(__file__).resolve().parents[1]


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    exp = client.create_experiment(f"writer-{time.time_ns()}")
    return client.create_run(exp).info.run_id


def steps_of(uri: str, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_batches_of_at_most_1000_all_arrive(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    run_id = new_run(uri)
    w = MetricWriter(run_id, uri, flush_interval=0.2)
    for step in range(1250):
        w.log_many({"a": step * 1.0, "b": -step}, step, 1_700_000_000_000 + step)
    w.log("a", float("nan"), 5000)
    assert w.flush(60)
    w.close()
    assert steps_of(uri, run_id, "a") == list(range(1250)) and steps_of(uri, run_id, "b") == list(range(1250))
    hist = {m.step: m for m in MlflowClient(uri).get_metric_history(run_id, "b")}
    assert hist[7].value == -7 and hist[7].timestamp == 1_700_000_000_007
    assert w.skipped == 1 and w.delivered == 2500 and w.spooled == 0


@pytest.mark.timeout(300)
def test_server_stopped_mid_run_loses_nothing(tmp_path):
    with MlflowServer(tmp_path / "srv") as server:
        run_id = new_run(server.uri)
        w = MetricWriter(run_id, server.uri, flush_interval=0.2)
        for step in range(100):
            w.log("energy/total_J", float(step), step)
        assert w.flush(30)
        server.stop()
        t0 = time.perf_counter()
        for step in range(100, 1100):
            w.log("energy/total_J", float(step), step)
        assert time.perf_counter() - t0 < 1.0  # the training thread never waits on the network
        assert not w.flush(30) and w.spooled == 1000
        server.start()
        for step in range(1100, 1200):
            w.log("energy/total_J", float(step), step)
        deadline = time.monotonic() + 60
        while not w.flush(30) and time.monotonic() < deadline:
            time.sleep(0.5)
        w.close()
        assert steps_of(server.uri, run_id, "energy/total_J") == list(range(1200))
        assert not w.spool.path.exists()


@pytest.mark.timeout(300)
def test_server_down_at_close_then_green_mlops_sync(tmp_path):
    server = MlflowServer(tmp_path / "srv").start()
    run_id = new_run(server.uri)
    server.stop()
    w = MetricWriter(run_id, server.uri, flush_interval=0.2)
    for step in range(50):
        w.log("energy/total_J", float(step), step)
    w.close(timeout=30)
    assert w.spooled == 50 and w.spool.path.exists()
    assert sync().remaining == 50  # still down: nothing lost, nothing delivered
    server.start()
    try:
        r = subprocess.run([sys.executable, "-m", "green_mlops", "sync"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "delivered 50" in r.stdout
        assert steps_of(server.uri, run_id, "energy/total_J") == list(range(50))
        assert not w.spool.path.exists()
    finally:
        server.stop()
