"""The delivery process's direct stores write what MLflow's own client writes, as MLflow reads it back.

Real MLflow throughout: the same metrics go to one run through ``MlflowClient.log_batch`` and to another
through :class:`~green_mlops.mlflow.sqlite.SqliteStore` (a SQLite store) or
:class:`~green_mlops.mlflow.stores.RestStore` (a real ``mlflow server``); MLflow's client must read both
runs identically: every metric's history, the latest values, and ``search_runs`` filtering and ordering
on a metric.
"""
from __future__ import annotations

import sqlite3
import time

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import _validate_metric

from green_mlops.mlflow.rest import RestStore
from green_mlops.mlflow.sqlite import SqliteStore
from green_mlops.mlflow.stores import ClientStore, StoreError, invalid_metric, open_store, rest_supported

T0 = 1_700_000_000_000
# out of order, a step logged twice with different timestamps, a re-sent duplicate, ties broken by value,
# extreme values: every case of MLflow's "latest" rule (largest step, then timestamp, then value)
RECORDS = [("energy/total_J", float(s) * 1.5, T0 + s, s) for s in range(120)] + [
    ("energy/total_J", 3.0, T0 + 2, 2),  # a re-sent duplicate of step 2: stored once
    ("power/total_W", 10.0, T0 + 9, 9), ("power/total_W", 12.0, T0 + 8, 9), ("power/total_W", 11.0, T0 + 9, 9),
    ("power/total_W", 5.0, T0 + 1, 3), ("power/cpu_W", 1e300, T0, 0), ("power/cpu_W", -1e300, T0, 1),
    ("power/cpu_W", 0.1 + 0.2, T0 + 5, 1), ("energy/net_J", -2.5, T0, 7), ("energy/net_J", -2.5, T0, 7),
]


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("stores") or client.get_experiment(client.create_experiment("stores"))
    return client.create_run(exp.experiment_id).info.run_id


def seen_by_mlflow(uri: str, run_id: str) -> dict:
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    keys = sorted(run.data.metrics)
    history = {k: sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}
    return {"latest": run.data.metrics, "history": history}


def found_by_search(uri: str, run_ids: list[str]) -> list[list[str]]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("stores").experiment_id
    out = []
    for flt, order in (("metrics.`energy/total_J` > 100", "metrics.`power/total_W` DESC"),
                       ("metrics.`power/total_W` = 11", "metrics.`energy/net_J` ASC")):
        found = client.search_runs([exp], flt, order_by=[order])
        out.append([r.info.run_id for r in found if r.info.run_id in run_ids])
    return out


def log_in_batches(store, run_id: str, records: list, size: int = 37) -> None:
    for i in range(0, len(records), size):
        store.log_metrics(run_id, records[i:i + size])


def same_as_mlflow(uri: str, store) -> None:
    by_mlflow, by_store = new_run(uri), new_run(uri)
    log_in_batches(ClientStore(uri), by_mlflow, RECORDS)
    log_in_batches(store, by_store, RECORDS)
    log_in_batches(store, by_store, RECORDS[:40])  # delivered twice (a lost acknowledgement): no change
    assert seen_by_mlflow(uri, by_store) == seen_by_mlflow(uri, by_mlflow)
    assert len(seen_by_mlflow(uri, by_store)["history"]["energy/total_J"]) == 120
    for found in found_by_search(uri, [by_mlflow, by_store]):
        assert sorted(found) == sorted([by_mlflow, by_store])


@pytest.fixture
def sqlite_uri(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # MLflow creates its schema
    return uri


def test_sqlite_store_writes_what_mlflow_writes(sqlite_uri):
    store = SqliteStore.open(sqlite_uri, 5)
    assert store is not None
    same_as_mlflow(sqlite_uri, store)


def test_rest_store_writes_what_mlflow_writes(server):
    assert rest_supported()
    same_as_mlflow(server.uri, RestStore(server.uri, 5))


@pytest.mark.parametrize("where", ["sqlite", "server"])
def test_refusals_carry_mlflow_status_and_write_nothing(where, sqlite_uri, request):
    uri = sqlite_uri if where == "sqlite" else request.getfixturevalue("server").uri
    store = open_store(uri, 5)
    assert isinstance(store, SqliteStore if where == "sqlite" else RestStore)
    run_id = new_run(uri)
    with pytest.raises(StoreError) as err:
        store.log_metrics(run_id, [("ok", 1.0, T0, 1), ("bad/../name", 2.0, T0, 1)])
    assert err.value.get_http_status_code() == 400 and "INVALID_PARAMETER_VALUE" in str(err.value)
    assert MlflowClient(uri).get_run(run_id).data.metrics == {}  # the whole batch is refused, as MLflow does
    with pytest.raises(StoreError) as err:
        store.log_metrics("f" * 32, [("ok", 1.0, T0, 1)])
    assert err.value.get_http_status_code() == 404
    MlflowClient(uri).delete_run(run_id)
    with pytest.raises(StoreError) as err:
        store.log_metrics(run_id, [("ok", 1.0, T0, 1)])
    assert err.value.get_http_status_code() == 400 and "active" in str(err.value)


def test_invalid_metric_follows_mlflow_validation():
    keys = ["energy/total_J", "a b:c-d.e_f", "ünïcode", "", "/abs", "a//b", "a/./b", "..", "../x", "a/..", ".", "a/",
            "bad/../name", "semi;colon", "star*", "new\nline", "x" * 300, "tab\tkey", "dot.", "./a"]
    for key in keys:
        for value, ts, step in ((1.0, T0, 1), (True, T0, 1), (1.0, -1, 1), (2, T0, 0), ("1", T0, 1)):
            try:
                _validate_metric(key, value, ts, step)
                mlflow_ok = True
            except Exception:
                mlflow_ok = False
            assert invalid_metric((key, value, ts, step)) is not mlflow_ok, (key, value, ts, step)


def test_sqlite_store_leaves_other_databases_to_mlflow(tmp_path):
    missing = tmp_path / "not-there.db"
    assert SqliteStore.open(f"sqlite:///{missing}", 5) is None and not missing.exists()  # never creates one
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE metrics (key TEXT, value REAL)")
    assert SqliteStore.open(f"sqlite:///{other}", 5) is None
    for uri in ("sqlite://", "sqlite:///:memory:", f"sqlite:///{other}?timeout=3"):
        assert SqliteStore.open(uri, 5) is None


def test_rest_settings_mlflow_would_apply_are_applied_or_left_to_mlflow(monkeypatch, tmp_path):
    plain = RestStore("http://127.0.0.1:5000/prefix/", 5, env={})
    assert plain.url == "http://127.0.0.1:5000/prefix/api/2.0/mlflow/runs/log-batch"
    assert "Authorization" not in plain.headers
    in_uri = RestStore("http://us%40er:p%3Aw@h:1", 5, env={"MLFLOW_TRACKING_TOKEN": "t"})
    assert in_uri.headers["Authorization"] == "Basic dXNAZXI6cDp3" and "us" not in in_uri.url  # us@er:p:w
    assert RestStore("http://h", 5, env={"MLFLOW_TRACKING_TOKEN": "t"}).headers["Authorization"] == "Bearer t"
    assert RestStore("http://tok@h", 5, env={}).headers["Authorization"] == "Basic dG9rOg=="  # tok: (requests' way)
    env = {"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p", "MLFLOW_TRACKING_INSECURE_TLS": "true"}
    tls = RestStore("https://h", 5, env=env)
    assert tls.headers["Authorization"] == "Basic dTpw" and tls.context is not None and not tls.context.check_hostname
    monkeypatch.setenv("HOME", str(tmp_path))
    assert rest_supported({})
    for unsupported in ({"MLFLOW_TRACKING_AUTH": "my_auth"}, {"MLFLOW_TRACKING_AWS_SIGV4": "true"},
                        {"MLFLOW_WORKSPACE": "team"}):
        assert not rest_supported(unsupported)
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = u\n")
    assert not rest_supported({})


def test_mlflow_client_on_request(monkeypatch, sqlite_uri):
    monkeypatch.setenv("GREEN_MLOPS_MLFLOW_CLIENT", "1")
    store = open_store(sqlite_uri, 5)
    assert isinstance(store, ClientStore)
    run_id = new_run(sqlite_uri)
    store.log_metrics(run_id, [("k", 1.0, T0, 1)])
    assert MlflowClient(sqlite_uri).get_metric_history(run_id, "k") == [Metric("k", 1.0, T0, 1)]


def test_a_locked_database_is_an_error_to_retry_not_a_loss(sqlite_uri):
    store = SqliteStore.open(sqlite_uri, 5)
    store.set_timeout(0.2)
    run_id = new_run(sqlite_uri)
    holder = sqlite3.connect(sqlite_uri.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        t = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.log_metrics(run_id, [("k", 1.0, T0, 1)])
        assert time.monotonic() - t < 5
    finally:
        holder.execute("ROLLBACK")
    store.log_metrics(run_id, [("k", 1.0, T0, 1)])
    assert len(MlflowClient(sqlite_uri).get_metric_history(run_id, "k")) == 1
