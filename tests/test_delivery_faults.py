"""Faults around delivery (issue 15): an unusable spool, credentials, a dead server at the end of a run.

Against real parts: a SQLite MLflow store, a real ``mlflow server`` stopped and started again, a real
PostgreSQL that requires a password, and real Lightning training on digits. We run as root, for
whom a read-only folder is writable; an unusable spool is therefore a path under a regular FILE
(ENOTDIR, which fails for root too) — the issue's first case, ``GREEN_MLOPS_SPOOL_DIR`` at a file.
"""
from __future__ import annotations

import logging
import stat
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from green_mlops.mlflow import MetricWriter, delivery, sync
from green_mlops.mlflow import writer as writer_module
from green_mlops.mlflow.spool import SpoolFile
from green_mlops.mlflow.uploads import upload_artifacts
from tests.mlflow_server import free_port
from tests.postgres import PostgresServer

KEY = "energy/total_J"
SECRET = "s3cret-pw"


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    return client.create_run(client.create_experiment(f"faults-{time.time_ns()}")).info.run_id


def steps(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, KEY))


def spool_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "spool" in r.getMessage() and r.levelno >= logging.WARNING]


@pytest.fixture
def file_spool(tmp_path, monkeypatch) -> Path:
    """GREEN_MLOPS_SPOOL_DIR under a regular file: unusable, for root too."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("GREEN_MLOPS_SPOOL_DIR", str(blocker / "spool"))
    return blocker / "spool"


# -- item 1: a bad spool never costs a healthy run ----------------------------------------------------

def test_unusable_spool_costs_nothing_when_the_store_answers(tmp_path, file_spool, caplog):
    """Real Lightning training with the spool at a file: every step's energy reaches a healthy SQLite store,
    the run ends FINISHED, and the spool is never even opened (so nothing to warn about)."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from green_mlops.lightning import EnergyCallback
    from tests.lightning_digits import DigitsMLP, digits_loaders

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(experiment_name="healthy-store", tracking_uri=uri)
    train, val = digits_loaders(batch_size=128)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=logger, callbacks=[EnergyCallback(interval=0.05)],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         log_every_n_steps=1)
    with caplog.at_level(logging.WARNING):
        trainer.fit(DigitsMLP(), train, val)
    run = MlflowClient(uri).get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert steps(uri, logger.run_id) == list(range(1, trainer.global_step + 1))  # every step, once
    assert not file_spool.parent.is_dir() and spool_warnings(caplog) == []


def test_unusable_spool_with_a_dead_server_warns_once_and_delivers_when_it_is_back(server, file_spool, caplog):
    """The server stops mid-run and the spool cannot be used: one warning with the reason; the metrics wait in
    memory and all arrive once the server is back; close() does not raise."""
    run_id = new_run(server.uri)
    with caplog.at_level(logging.WARNING):
        w = MetricWriter(run_id, server.uri, flush_interval=0.2)
        for s in range(50):
            w.log(KEY, float(s), s)
        assert w.flush(timeout=60)
        server.stop()
        try:
            for s in range(50, 100):
                w.log(KEY, float(s), s)
            assert not w.flush(timeout=3)
        finally:
            server.start()
        w.flush(timeout=60)
        w.close(timeout=30)
    assert steps(server.uri, run_id) == list(range(100))
    warned = spool_warnings(caplog)
    assert len([m for m in warned if "cannot be used" in m]) == 1, warned
    assert any("Not a directory" in m or "not a folder" in m for m in warned), warned
    assert w.lost == 0


# -- item 2: no password in clear text ----------------------------------------------------------------

def test_credentials_never_in_spool_lines_or_warnings_and_spool_is_private(server, tmp_path, caplog):
    """A tracking URI with a password, server down: the spool (0700 folder, 0600 files) names the URI redacted;
    the full URI is kept once, privately, and `sync` uses it when the server is back."""
    user_uri = server.uri.replace("http://", f"http://green:{SECRET}@")
    run_id = new_run(server.uri)
    spool_dir = tmp_path / "spool"
    server.stop()
    try:
        with caplog.at_level(logging.INFO):
            w = MetricWriter(run_id, user_uri, spool_dir=spool_dir, flush_interval=0.2)
            for s in range(20):
                w.log(KEY, float(s), s)
            w.close(timeout=5)
        spool = SpoolFile(spool_dir, run_id)
        assert spool.count() == 20
        assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
        for f in spool_dir.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        text = spool.path.read_text()
        assert SECRET not in text and "green:***@" in text
        assert spool.uri_path.read_text() == user_uri  # kept once, for sync, readable by the owner only
        assert all(SECRET not in r.getMessage() for r in caplog.records)
    finally:
        server.start()
    report = sync(spool_dir)
    assert report.delivered == 20 and report.remaining == 0
    assert steps(server.uri, run_id) == list(range(20)) and not spool.uri_path.exists()


@pytest.mark.skipif(not PostgresServer().available, reason="PostgreSQL is not installed (scripts/test.sh installs it)")
def test_sweep_storage_password_is_not_logged(server, tmp_path):
    """A sweep on a real PostgreSQL that requires a password: the parent run's `storage` param, the UI hint and a
    refused connection's message carry the URL with the password masked."""
    from green_mlops.search import StorageError, Sweep, SweepSettings, build_space, open_storage
    from green_mlops.search.tracking import SweepTracking
    from tests.search_runner import check_arch, run_trial

    with PostgresServer(password=SECRET) as pg:
        assert SECRET in pg.url
        settings = SweepSettings(study="secret", storage=pg.url, experiment=f"secret-{time.time_ns()}",
                                 tracking_uri=server.uri, output_dir=tmp_path / "out", progress=False)
        sweep = Sweep(build_space("mlp8", "64", check_arch=check_arch), settings, run_trial)
        params = MlflowClient(server.uri).get_run(sweep.parent_id).data.params
        assert SECRET not in params["storage"] and params["storage"] == pg.url.replace(SECRET, "***")
        with pytest.raises(StorageError) as err:
            open_storage(pg.url.replace(SECRET, SECRET + "-wrong"))
        assert SECRET not in str(err.value) and "password authentication failed" in str(err.value)
    hint = SweepTracking("hint", server.uri.replace("http://", f"http://green:{SECRET}@")).ui_hint("r1")
    assert SECRET not in hint and "green:***@" in hint


# -- item 6: a dead server at the end of a run --------------------------------------------------------

def test_artifacts_to_a_dead_server_are_kept_and_synced_later(server, tmp_path, monkeypatch, caplog):
    """Upload to a stopped server fails fast (no retries for minutes) and keeps the files in the spool folder,
    privately; the temporary folder is removed; `green-mlops sync` uploads them once the server is back."""
    import tempfile

    from green_mlops.cli import main

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")  # the user's own setting comes back after our call
    run_id = new_run(server.uri)
    spool_dir = tmp_path / "spool"
    made = Path(tempfile.mkdtemp(prefix="green_mlops_"))
    files = [made / "run_summary.json", made / "run_trace.csv"]
    for f in files:
        f.write_text(f"content of {f.name}")
    client = MlflowClient(server.uri)
    server.stop()
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            kept = upload_artifacts(client, run_id, files, spool_dir=spool_dir)
        took = time.monotonic() - started
    finally:
        server.start()
    assert took < 60, f"{took:.0f} s: MLflow's default retries would take about four minutes"
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"
    assert kept == spool_dir / f"{run_id}.artifacts" / "green_mlops"
    assert sorted(p.name for p in kept.iterdir()) == ["run_summary.json", "run_trace.csv"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept.iterdir())
    assert not made.exists()
    msgs = [r.getMessage() for r in caplog.records if "artifact" in r.getMessage()]
    assert len(msgs) == 1 and str(kept) in msgs[0] and "green-mlops sync" in msgs[0]
    assert main(["sync", "--spool-dir", str(spool_dir)]) == 0
    listed = sorted(a.path for a in client.list_artifacts(run_id, "green_mlops"))
    assert listed == ["green_mlops/run_summary.json", "green_mlops/run_trace.csv"]
    assert not (spool_dir / f"{run_id}.artifacts").exists()


def test_sweep_and_report_refuse_a_dead_tracking_uri_in_seconds():
    """Nothing listens on the port: both refuse in one line, in seconds rather than MLflow's ~250 s of retries."""
    from green_mlops.analysis.errors import AnalysisError
    from green_mlops.analysis.tracking import find_experiment
    from green_mlops.search.tracking import SweepTracking

    dead = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ConnectionError) as err:
        SweepTracking("exp", dead)
    with pytest.raises(AnalysisError) as err2:
        find_experiment(MlflowClient(dead), "exp")
    assert time.monotonic() - started < 60
    assert "\n" not in str(err.value) and dead in str(err.value)
    assert dead in str(err2.value)


# -- item 8: run ids, delivery restarts ---------------------------------------------------------------

def test_run_id_cannot_name_a_file_outside_the_spool(tmp_path):
    for bad in ("../x", "a/b", "", ".hidden", "x\n"):
        with pytest.raises(ValueError, match="run_id must be an MLflow run id"):
            SpoolFile(tmp_path, bad)
        with pytest.raises(ValueError, match="run_id must be an MLflow run id"):
            MetricWriter(bad, f"sqlite:///{tmp_path / 'm.db'}")
    assert list(tmp_path.iterdir()) == []


def test_delivery_restarts_after_a_pause_instead_of_stopping_for_good(tmp_path, monkeypatch):
    """The delivery process dies again and again (as in a short disk-full spell): after the quick restarts,
    metrics wait in the spool, and delivery starts again after a pause and delivers everything."""
    monkeypatch.setattr(writer_module, "RESTART_PAUSE_S", 1.0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = new_run(uri)
    w = MetricWriter(run_id, uri, flush_interval=0.2)
    w.log(KEY, 0.0, 0)
    assert w.flush(timeout=60)
    for _ in range(delivery.MAX_RESTARTS + 1):
        proc = w._proc
        assert proc is not None
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30  # until it is started again, or paused
        while (w._proc is proc or (w._proc is None and not w._restart_at)) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert w._proc is None  # paused: metrics go to the spool meanwhile
    for s in range(1, 30):
        w.log(KEY, float(s), s)
        time.sleep(0.05)
    deadline = time.monotonic() + 60
    while w._proc is None and time.monotonic() < deadline:
        w.log(KEY, 29.0, 29)  # the writer restarts delivery on its next send once the pause is over
        time.sleep(0.2)
    assert w._proc is not None
    deadline = time.monotonic() + 60
    while not w.flush(timeout=60) and time.monotonic() < deadline:  # the restarted process drains the spool
        time.sleep(0.2)
    w.close()
    assert w.spooled == 0 and not w.spool.exists()
    assert sorted(set(steps(uri, run_id))) == list(range(30))
