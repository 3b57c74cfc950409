"""Many workers, one study: two processes against a real PostgreSQL and a real ``mlflow server``.

Every grid point runs exactly once; a worker killed mid-trial has its trial failed through Optuna's
heartbeat, its energy up to the kill stays in MLflow, and the other worker completes the study.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.mlflow_server import MlflowServer
from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
pg = PostgresServer()
pytestmark = pytest.mark.skipif(not pg.available, reason="PostgreSQL is not installed (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    with PostgresServer() as db, MlflowServer(tmp_path_factory.mktemp("mlflow")) as server:
        yield db.url, server.uri


def worker(storage: str, tracking: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.sweep_worker", storage, tracking, str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_two_workers_share_one_study_and_survive_a_killed_worker(services, tmp_path):
    storage, tracking = services
    a, b = worker(storage, tracking, tmp_path / "a"), worker(storage, tracking, tmp_path / "b")
    study = None
    deadline = time.monotonic() + 240
    victim_trial = None
    while victim_trial is None and time.monotonic() < deadline:  # kill worker a in the middle of a trial
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="shared", storage=storage)
        except KeyError:
            continue
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{a.pid}") and "mlflow_run_id" in t.user_attrs:
                victim_trial = t
    assert victim_trial is not None, "worker a never started a trial"
    client = MlflowClient(tracking)
    run_id = victim_trial.user_attrs["mlflow_run_id"]
    while not client.get_metric_history(run_id, "energy/total_J") and time.monotonic() < deadline:
        time.sleep(0.5)  # kill in the middle of training, once energy has been measured (slow on a loaded machine)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    out_b, _ = b.communicate(timeout=400)
    assert b.returncode == 0, out_b[-3000:]
    assert "complete=True" in out_b

    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    points = [(t.params["arch"], t.params["batch_size"]) for t in trials]
    assert sorted(points) == sorted((a_, b_) for a_ in ("mlp8", "mlp16", "mlp32") for b_ in (64, 128))
    assert len(points) == len(set(points)) == 6  # every grid point exactly once
    states = {t.number: t.state for t in trials}
    assert states[victim_trial.number] == TrialState.FAIL
    assert all(s == TrialState.COMPLETE for n, s in states.items() if n != victim_trial.number)

    exp = client.get_experiment_by_name("multi")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("green_mlops.sweep.role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {x.path for x in client.list_artifacts(parents[0].info.run_id)} >= {"ranking.csv", "pareto.png"}
    killed = client.get_run(victim_trial.user_attrs["mlflow_run_id"])
    assert killed.info.status == "FAILED" and "heartbeat" in killed.data.tags["green_mlops.sweep.error"]
    history = client.get_metric_history(killed.info.run_id, "energy/total_J")
    assert history and history[-1].value > 0  # the energy measured before the kill is in MLflow


def test_two_workers_released_together_on_a_fresh_mlflow_sqlite_store(tmp_path):
    """Issue 15, item 4: two real sweep workers, released at the same instant on fresh SQLite files (MLflow's
    store and Optuna's study). MLflow creates its schema on first use and two processes doing so at once
    collide (``duplicate column name: step``); the loser now waits for the winner and retries, so both join
    the one study and agree on its parent run, with no traceback. (Slow: MLflow's migrations take ~25 s on
    two busy cores, twice over when they race.)"""
    storage, tracking, go = f"sqlite:///{tmp_path}/study.db", f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.first_use_worker", storage, tracking,
                               str(tmp_path / f"{w}.ready"), str(go)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for w in "ab"]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{w}.ready").exists() for w in "ab") and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in out, out[-3000:]
    parents = {line.split()[1] for out in outs for line in out.splitlines() if line.startswith("parent ")}
    assert len(parents) == 1, outs
    run = MlflowClient(tracking).get_run(parents.pop())
    assert run.data.tags["green_mlops.sweep.role"] == "parent"


@pytest.mark.parametrize("face", ["circular", "index"])
def test_a_schema_seen_mid_migration_is_waited_for_and_retried(monkeypatch, face):
    """Faces of the first-use race seen under load, besides those the two-worker test provokes: SQLAlchemy
    reflecting a table the other worker is rebuilding (``CircularDependencyError``, caught by CI) and SQLite
    dropping an index the other worker already dropped (``no such index``). Both are retried; an unrelated
    error is not."""
    from sqlalchemy.exc import CircularDependencyError, OperationalError

    from green_mlops.search import tracking

    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    calls = []

    def opens_on_the_third_try():
        calls.append(1)
        if len(calls) < 3:
            raise (CircularDependencyError("Circular dependency detected.", [], [("status_details", "workspace")])
                   if face == "circular" else
                   OperationalError("DROP INDEX index_latest_metrics_run_uuid", {}, Exception("no such index")))
        return "store"

    assert tracking.first_use(opens_on_the_third_try, "sqlite:///x.db") == "store" and len(calls) == 3
    with pytest.raises(ValueError):
        tracking.first_use(lambda: (_ for _ in ()).throw(ValueError("bad experiment name")), "sqlite:///x.db")


def test_workers_released_together_on_an_empty_postgres_database_all_open_it(services, tmp_path):
    """Workers starting at once on an empty PostgreSQL database used to race creating Optuna's tables
    (``UniqueViolation`` on ``pg_type_typname_nsp_index``, about one start in six with two workers); the schema is
    now created under an advisory lock, so every worker opens the storage, on each of several fresh databases."""
    import sqlalchemy

    storage, _ = services
    base, dbs = storage.rsplit("/", 1)[0], [f"race{i}" for i in range(6)]
    admin = sqlalchemy.create_engine(storage, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
    with admin.connect() as conn:
        for db in dbs:
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {db}"))
    admin.dispose()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-m", "tests.storage_worker", str(tmp_path / f"{w}.ready"), str(go),
                               *(f"{base}/{db}" for db in dbs)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for w in "abc"]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{w}.ready").exists() for w in "abc") and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(len(dbs)):  # release all three on database i at once, then the next database
        Path(f"{go}{i}").touch()
        time.sleep(1.0)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and out.split() == [w for i in range(len(dbs)) for w in ("ok", str(i))], out[-3000:]
    for db in dbs:  # one schema each, usable by a study
        study = optuna.create_study(study_name="s", storage=f"{base}/{db}")
        assert study.study_name == "s"
