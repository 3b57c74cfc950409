"""Shared test set-up: each test gets its own spool folder and its own default MLflow store.

Lightning's MLFlowLogger sets MLflow's global tracking URI; without this reset a later test could
talk to a server an earlier test already stopped.
"""
import os

import mlflow
import pytest

from tests.mlflow_server import MlflowServer


@pytest.fixture(autouse=True)
def _private_spool_and_store(tmp_path, monkeypatch):
    monkeypatch.setenv("GREEN_MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'default-mlflow.db'}")
    _forget_active_experiment_and_run()
    mlflow.set_tracking_uri(None)
    yield
    mlflow.set_tracking_uri(None)
    _forget_active_experiment_and_run()


def _forget_active_experiment_and_run():
    """``mlflow.set_experiment`` exports MLFLOW_EXPERIMENT_ID for child processes; keep it from leaking."""
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(name, None)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1, one per test module (a module may define its own ``server``)."""
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as srv:
        yield srv


@pytest.fixture()
def hf_store(tmp_path, monkeypatch):
    """A SQLite MLflow store that transformers' MLflowCallback finds through its environment variables."""
    uri = f"sqlite:///{tmp_path / 'hf.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf")
    return uri
