"""The delivery process imports MLflow only where it must, then without pandas, numpy and pyarrow, and falls back
when a store needs them.

Real MLflow throughout: a SQLite store and the module's tracking server. The delivery process's
memory maps show which shared libraries it loaded, so "no numpy" is read from the process itself.
A SQLite store and a tracking server are written without MLflow's client (``green_mlops.mlflow.stores``);
``GREEN_MLOPS_MLFLOW_CLIENT=1`` sends them through it, which is how the tests below reach MLflow's client.
"""
from __future__ import annotations

import logging
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient

from green_mlops.mlflow import MetricWriter, skinny, sync
from green_mlops.mlflow.spool import SpoolFile

KEY = "energy/total_J"
T0 = 1_700_000_000_000


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    return client.create_run(client.create_experiment(f"skinny-{time.time_ns()}")).info.run_id


def steps(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, KEY))


def loaded_packages(pid: int) -> set[str]:
    """Top-level site-packages names with a shared library mapped into process ``pid``."""
    names = set()
    for m in psutil.Process(pid).memory_maps():
        if "site-packages/" in m.path:
            names.add(m.path.split("site-packages/")[1].split("/")[0].split(".")[0])
    return names


@pytest.mark.parametrize("uri", ["http://127.0.0.1", "https://mlflow.example:5000", "sqlite:////tmp/x.db",
                                 "postgresql+psycopg://u@h/db", "mysql://h/db", "file:///tmp/mlruns", "/tmp/mlruns",
                                 "mlruns"])
def test_mlflow_built_in_stores_run_lean(uri):
    assert skinny.lean_for(uri)


@pytest.mark.parametrize("uri", ["databricks", "databricks://profile", "myplugin://somewhere"])
def test_plugin_stores_get_every_import(uri):
    assert not skinny.lean_for(uri)


def test_a_refusal_is_recognised_through_the_exceptions_that_wrap_it():
    finder = skinny.SkinnyImports(["pandas"])
    try:
        try:
            finder.find_spec("pandas.core", None)
        except ModuleNotFoundError as exc:
            raise RuntimeError("store failed") from exc
    except RuntimeError as wrapped:
        assert finder.caused(wrapped)
    assert finder.refused == {"pandas.core"}
    assert not finder.caused(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert finder.find_spec("pandasx", None) is None  # a prefix is not the package


# compiled parts MLflow's client brings (SQLAlchemy's, pydantic's, protobuf's): none in a process without it
MLFLOW_CLIENT_LIBS = {"sqlalchemy", "pydantic_core", "google"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("client", [False, True], ids=["direct", "mlflow-client"])
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_delivery_process_has_no_pandas_numpy_or_pyarrow_and_delivers(store, client, tmp_path, request, monkeypatch):
    if client:
        monkeypatch.setenv("GREEN_MLOPS_MLFLOW_CLIENT", "1")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}" if store == "sqlite" else request.getfixturevalue("server").uri
    run_id = new_run(uri)
    w = MetricWriter(run_id, uri, flush_interval=0.1)
    for step in range(500):
        w.log(KEY, float(step), step, T0 + step)
    assert w.flush(60) is True
    loaded = loaded_packages(w._proc.pid)
    if client:
        assert loaded & MLFLOW_CLIENT_LIBS  # MLflow itself did load: the maps are read right
    else:
        assert not loaded & MLFLOW_CLIENT_LIBS, loaded
    assert not loaded & {"numpy", "pandas", "pyarrow"}, loaded
    w.close()
    assert steps(uri, run_id) == list(range(500))


@pytest.mark.timeout(120)
def test_a_store_that_needs_a_refused_import_is_delivered_with_every_import(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("GREEN_MLOPS_MLFLOW_CLIENT", "1")
    monkeypatch.setattr(skinny, "OPTIONAL", (*skinny.OPTIONAL, "sqlalchemy"))  # as a store plugin needing it would
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = new_run(uri)
    with caplog.at_level(logging.INFO, logger="green_mlops.mlflow.writer"):
        w = MetricWriter(run_id, uri, flush_interval=0.1)
        for step in range(300):
            w.log(KEY, float(step), step, T0 + step)
        deadline = time.monotonic() + 60
        while not w.flush(10):  # what the first process held is spooled, then delivered by the second
            assert time.monotonic() < deadline, w.last_error
        w.close()
    assert steps(uri, run_id) == list(range(300))
    assert w._restarts == 0 and not w._skinny
    assert "needs MLflow's optional imports" in caplog.text


@pytest.mark.timeout(120)
def test_sync_falls_back_to_every_import_too(monkeypatch, tmp_path):
    monkeypatch.setenv("GREEN_MLOPS_MLFLOW_CLIENT", "1")
    monkeypatch.setattr(skinny, "OPTIONAL", (*skinny.OPTIONAL, "sqlalchemy"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = new_run(uri)
    spool = SpoolFile(tmp_path / "spool", run_id, uri)
    spool.append([(KEY, float(s), T0 + s, s) for s in range(50)])
    report = sync(tmp_path / "spool")
    assert report.delivered == 50 and report.remaining == 0, report
    assert steps(uri, run_id) == list(range(50))
