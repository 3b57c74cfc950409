"""autolog(): any mlflow.start_run() gets energy metrics, stepped by seconds, and a summary."""
from __future__ import annotations

import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from green_mlops.mlflow import autolog


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("autolog")
    yield uri
    autolog(disable=True)
    mlflow.set_tracking_uri(None)


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(2000))


def test_plain_run_gets_energy_by_second_and_summary(store):
    autolog(interval=0.05, idle_seconds=0.3)
    with mlflow.start_run() as run:
        busy(2.5)
    client = MlflowClient(store)
    data = client.get_run(run.info.run_id)
    hist = client.get_metric_history(run.info.run_id, "energy/total_J")
    assert [h.step for h in sorted(hist, key=lambda h: h.step)] == [1, 2, 3]
    values = [h.value for h in sorted(hist, key=lambda h: h.step)]
    assert values[0] > 0 and values == sorted(values)
    m = data.data.metrics
    assert m["energy/run_J"] == pytest.approx(values[-1], abs=1e-3)  # per-step values are rounded to 1 mJ
    assert {"energy/run_cpu_J", "energy/run_dram_J", "co2e/run_g", "energy/run_net_J", "power/total_W"} <= set(m)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "green_mlops")}
    assert {"green_mlops/run_trace.parquet", "green_mlops/run_energy.png", "green_mlops/run_summary.json"} <= arts
    assert data.info.status == "FINISHED"


def test_run_that_raises_is_failed_with_its_energy(store):
    autolog(interval=0.05)
    with pytest.raises(ZeroDivisionError):
        with mlflow.start_run() as run:
            busy(1.2)
            raise ZeroDivisionError("a bug in the code inside the run")
    client = MlflowClient(store)
    data = client.get_run(run.info.run_id)
    assert data.info.status == "FAILED"
    assert data.data.metrics["energy/run_J"] > 0


def test_disable_restores_mlflow(store):
    original = mlflow.start_run
    autolog()
    assert mlflow.start_run is not original
    autolog(disable=True)
    assert mlflow.start_run is original
    with mlflow.start_run() as run:
        pass
    assert "energy/run_J" not in MlflowClient(store).get_run(run.info.run_id).data.metrics


def test_bad_input():
    with pytest.raises(ValueError, match="log_every_seconds"):
        autolog(log_every_seconds=0.5)
    with pytest.raises(ValueError, match="interval"):
        autolog(interval=-1)
