"""MetricWriter and sync against real MLflow: a SQLite store, and a tracking server that goes away and comes back.

Every spool lives in the test's tmp_path (conftest sets GREEN_MLOPS_SPOOL_DIR). One server is shared
by the module: starting one costs seconds, so it is stopped only to make an outage.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from green_mlops.mlflow import MetricWriter, SyncReport, default_spool_dir, sync
from green_mlops.mlflow.delivery import _Delivery
from green_mlops.mlflow.spool import SpoolFile

T0 = 1_700_000_000_000  # a fixed timestamp base (ms)
KEY = "energy/total_J"


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    return client.create_run(client.create_experiment(f"writer-{time.time_ns()}")).info.run_id


def history(uri: str, run_id: str, key: str = KEY) -> list:
    return sorted(MlflowClient(uri).get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory):
    """One SQLite store for the module (creating its schema takes seconds); every test has its own run."""
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'mlflow.db'}"


# ---------------------------------------------------------------------------------------------------
# SQLite store
# ---------------------------------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_every_metric_arrives_with_its_step_and_timestamp_and_non_finite_is_skipped(sqlite_uri, tmp_path):
    run_id = new_run(sqlite_uri)
    w = MetricWriter(run_id, sqlite_uri, flush_interval=0.2)
    for step in range(1250):  # 2500 metrics: at least three log_batch calls
        w.log_many({"a": step * 0.5, "b": -step}, step, T0 + step)
    w.log("a", float("nan"), 5000)
    w.log("a", float("inf"), 5001)
    w.log_many({"b": float("-inf"), "c": "not a number"}, 5002)  # type: ignore[dict-item]
    assert w.flush(60) is True
    w.close()
    a, b = history(sqlite_uri, run_id, "a"), history(sqlite_uri, run_id, "b")
    assert [m.step for m in a] == list(range(1250)) and [m.step for m in b] == list(range(1250))
    assert all(m.value == m.step * 0.5 and m.timestamp == T0 + m.step for m in a)
    assert all(m.value == -m.step and m.timestamp == T0 + m.step for m in b)
    assert MlflowClient(sqlite_uri).get_metric_history(run_id, "c") == []
    assert (w.delivered, w.skipped, w.spooled, w.rejected) == (2500, 4, 0, 0)
    assert not w.spool.path.exists()


@pytest.mark.parametrize("client", [True, False], ids=["mlflow-client", "direct"])
def test_log_batch_calls_carry_at_most_max_batch_metrics(sqlite_uri, tmp_path, monkeypatch, client):
    """The delivery engine itself, on a real store: in order, spool first; calls of ≤ 1000 through MLflow's client,
    one transaction for all that waits when writing SQLite directly (each transaction locks the database)."""
    if client:
        monkeypatch.setenv("GREEN_MLOPS_MLFLOW_CLIENT", "1")
    run_id = new_run(sqlite_uri)
    sizes: list[int] = []

    class Counting(_Delivery):
        def _log_batch(self, batch):
            sizes.append(len(batch))
            super()._log_batch(batch)

    spool = SpoolFile(tmp_path / "spool", run_id, sqlite_uri)
    spool.append([(KEY, float(s), T0 + s, s) for s in range(1500)])  # left over from an outage
    d = Counting(run_id, sqlite_uri, spool)
    d.pending = [(KEY, float(s), T0 + s, s) for s in range(1500, 4000)]
    assert d.deliver() is True
    # what arrived during the drain queued up behind the spool, on disk
    assert sizes == ([1000] * 4 if client else [1500, 2500])
    assert [m.step for m in history(sqlite_uri, run_id)] == list(range(4000))
    assert not spool.path.exists() and not spool.lock_path.exists() and d.spooled == 0


def test_invalid_metric_is_set_aside_and_the_rest_delivered(sqlite_uri):
    run_id = new_run(sqlite_uri)
    w = MetricWriter(run_id, sqlite_uri, flush_interval=0.2)
    w.log_many({"ok": 1.0, "bad/../name": 2.0, "also_ok": 3.0}, 7)
    assert w.flush(60) is True
    w.close()
    data = MlflowClient(sqlite_uri).get_run(run_id).data.metrics
    assert data == {"ok": 1.0, "also_ok": 3.0}
    assert w.rejected == 1 and w.delivered == 2
    rejected = [json.loads(line) for line in w.spool.rejected_path.read_text().splitlines()]
    assert [(r["key"], r["value"], r["step"]) for r in rejected] == [("bad/../name", 2.0, 7)]
    assert "error" in rejected[0]


def test_a_killed_delivery_process_loses_nothing(sqlite_uri):
    run_id = new_run(sqlite_uri)
    w = MetricWriter(run_id, sqlite_uri, flush_interval=0.1)
    for step in range(300):
        w.log(KEY, float(step), step, T0 + step)
    os.kill(w._proc.pid, signal.SIGKILL)  # unacknowledged batches are spooled, the process restarted
    for step in range(300, 600):
        w.log(KEY, float(step), step, T0 + step)
        if step % 100 == 0:
            time.sleep(0.05)
    assert w.flush(60) is True
    w.close()
    assert [m.step for m in history(sqlite_uri, run_id)] == list(range(600))
    assert not w.spool.path.exists()


def test_spool_survives_a_torn_line(tmp_path):
    spool = SpoolFile(tmp_path, "r1", "sqlite:///x.db")
    spool.append([("k", 1.0, T0, 1)])
    with spool.path.open("ab") as fh:
        fh.write(b'{"run_id": "r1", "tracking_uri": "sqlite:///x.db", "key": "k", "va')  # a killed writer
    spool.append([("k", 2.0, T0 + 1, 2)])
    with spool.path.open("rb") as fh:
        assert SpoolFile.read_batch(fh, 10) == [("k", 1.0, T0, 1), ("k", 2.0, T0 + 1, 2)]
    line = json.loads(spool.path.read_text().splitlines()[0])
    assert line == {"run_id": "r1", "tracking_uri": "sqlite:///x.db", "key": "k", "value": 1.0,
                    "timestamp": T0, "step": 1}


def test_default_spool_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GREEN_MLOPS_SPOOL_DIR", str(tmp_path / "s"))
    assert default_spool_dir() == tmp_path / "s"
    monkeypatch.delenv("GREEN_MLOPS_SPOOL_DIR")
    assert default_spool_dir() == Path.home() / ".cache" / "green_mlops" / "spool"


# ---------------------------------------------------------------------------------------------------
# A real tracking server
# ---------------------------------------------------------------------------------------------------

@pytest.mark.timeout(180)
def test_server_stopped_while_logging_loses_nothing(server):
    run_id = new_run(server.uri)
    w = MetricWriter(run_id, server.uri, flush_interval=0.2)
    step = 0

    def log_until(stop: threading.Event) -> None:  # a training loop: one step every 2 ms
        nonlocal step
        while not stop.is_set():
            w.log(KEY, float(step), step, T0 + step)
            step += 1
            time.sleep(0.002)

    for step in range(100):
        w.log(KEY, float(step), step, T0 + step)
    step = 100
    assert w.flush(30) is True and w.delivered == 100

    stop = threading.Event()
    training = threading.Thread(target=log_until, args=(stop,))
    training.start()
    time.sleep(0.3)
    server.stop()  # mid-run
    wait_for(lambda: w.spooled > 0, 15, "metrics to be spooled while the server is down")
    assert w.last_error and w.spool.path.exists()

    stop.set()
    training.join()
    t = time.perf_counter()  # the training thread's cost does not depend on the server
    for i in range(1000):
        w.log(KEY, float(step + i), step + i, T0 + step + i)
    assert time.perf_counter() - t < 0.2
    step += 1000
    t = time.perf_counter()
    assert w.flush(30) is False  # not delivered, but safely on disk, and quickly
    assert time.perf_counter() - t < 10

    stop.clear()
    training = threading.Thread(target=log_until, args=(stop,))
    training.start()
    server.start()  # same port, same store; the writer finds it again by itself
    time.sleep(0.5)
    stop.set()
    training.join()
    wait_for(lambda: w.spooled == 0 and not w.spool.path.exists(), 30, "the spool to be delivered")
    assert w.flush(30) is True
    w.close()
    steps = [m.step for m in history(server.uri, run_id)]
    assert steps == list(range(step))  # every step, exactly once
    assert w.delivered >= step and w.spooled == 0  # a batch whose answer was lost may be sent twice
    assert not w.spool.path.exists() and not w.spool.lock_path.exists()


@pytest.mark.timeout(180)
def test_server_down_at_close_stays_spooled_until_sync(server):
    run_id = new_run(server.uri)
    server.stop()
    try:
        w = MetricWriter(run_id, server.uri, flush_interval=0.2)
        for step in range(50):
            w.log(KEY, float(step), step, T0 + step)
        t = time.perf_counter()
        w.close(timeout=30)
        assert time.perf_counter() - t < 10
        assert w.spooled == 50 and w.spool.path.exists()
        lines = [json.loads(line) for line in w.spool.path.read_text().splitlines()]
        assert lines[3] == {"run_id": run_id, "tracking_uri": server.uri, "key": KEY, "value": 3.0,
                            "timestamp": T0 + 3, "step": 3}

        report = sync()  # still down: nothing delivered, nothing lost, quickly
        assert (report.delivered, report.remaining) == (0, 50) and run_id in report.errors
        assert w.spool.path.exists()
    finally:
        server.start()
    report = sync()
    assert report == SyncReport(delivered=50, remaining=0, rejected=0, errors={})
    assert [m.step for m in history(server.uri, run_id)] == list(range(50))
    assert not w.spool.path.exists()


@pytest.mark.timeout(120)
def test_a_server_that_never_answers_costs_seconds_not_minutes(tmp_path):
    """A port that accepts connections but never replies: MLflow's defaults (7 retries, 120 s timeout)
    would hold each request for many minutes; the writer's requests give up in ~5 s, and the user's
    own MLflow settings are untouched."""
    before = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        w = MetricWriter("0" * 32, uri, flush_interval=0.2)
        w.log_many({KEY: 1.0, "power/total_W": 2.0}, 1, T0)
        t = time.perf_counter()
        w.close(timeout=60)
        elapsed = time.perf_counter() - t
    assert elapsed < 20
    assert w.spooled == 2 and "timeout" in (w.last_error or "").lower()
    assert {k: os.environ.get(k) for k in before} == before
