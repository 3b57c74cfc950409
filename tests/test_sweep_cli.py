"""`green-mlops sweep` end to end on the CPU: zoo models trained on digits, a real Optuna study, a real
MLflow store, the ranking CSV and plot; bad input refused before training; `mlflow run` of the project."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from green_mlops.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_three_trial_sweep_on_digits(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    rc = main(["sweep", "--archs", "lenet", "--batch-sizes", "32,64,128", "--max-steps", "8", "--lrs", "0.05",
               "--storage", f"sqlite:///{tmp_path}/study.db", "--tracking-uri", store, "--experiment", "cli",
               "--output", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "pareto_rank" in out and "MLflow UI: run `mlflow ui --backend-store-uri" in out
    ranking = pd.read_csv(tmp_path / "out" / "ranking.csv")
    assert sorted(ranking["batch_size"]) == [32, 64, 128] and (ranking["state"] == "COMPLETE").all()
    assert (ranking["training_J"] > 0).all() and (ranking["inference_J"] > 0).all()
    assert (tmp_path / "out" / "pareto.png").stat().st_size > 10_000
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    trials = [r for r in runs if r.data.tags.get("green_mlops.sweep.role") == "trial"]
    assert len(trials) == 3
    for r in trials:
        assert r.data.params["arch"] == "lenet" and r.data.params["dataset"] == "digits"
        assert int(r.data.params["green_mlops.trainable_params"]) == 62006  # the zoo's LeNet, logged by the callback
        for key in ("energy/total_J", "energy/fit_J", "energy/predict_J", "green_mlops/energy_per_sample_inference_J",
                    "energy/lifecycle_J", "accuracy_per_kJ", "val_acc"):
            assert key in r.data.metrics, key

    # the analysis reads what the sweep logged: `green-mlops report` on this experiment
    assert main(["report", "--experiment", "cli", "--tracking-uri", store, "--output", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "lenet" in html and "estimated" in html  # provenance of the CPU-only numbers is in the report
    reports = [r for r in client.search_runs([client.get_experiment_by_name("cli").experiment_id])
               if r.data.tags.get("green_mlops.analysis.role") == "report"]
    assert len(reports) == 1 and any(a.path.endswith(".html") for a in client.list_artifacts(reports[0].info.run_id, "report"))


@pytest.mark.parametrize("argv, message", [
    (["--archs", "resnet9000", "--batch-sizes", "32"], "resnet"),
    (["--archs", "lenet", "--batch-sizes", "0"], "batch size must be ≥ 1"),
    (["--archs", "", "--batch-sizes", "32"], "no architectures"),
    (["--archs", "lenet", "--batch-sizes", "32", "--storage", "postgresql://u:p@127.0.0.1:1/x"], "reachable"),
    (["--archs", "lenet", "--batch-sizes", "32", "--dataset", "imagenet"], "unknown dataset"),
    (["--archs", "lenet", "--batch-sizes", "32", "--epochs", "0"], "epochs"),
    (["--archs", "lenet", "--batch-sizes", "32", "--lr-range", "0.001:0.1"], "--n-trials"),
])
def test_bad_input_is_refused_before_training(tmp_path, capsys, argv, message):
    rc = main(["sweep", *argv, "--storage" if "--storage" not in argv else "--output",
               f"sqlite:///{tmp_path}/s.db" if "--storage" not in argv else str(tmp_path / "o"),
               "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err
    assert not (tmp_path / "green_mlops_sweep").exists()


def _sweep(tmp_path: Path, *argv: str, study: str = "s") -> list[str]:
    return ["sweep", "--archs", "lenet", "--batch-sizes", "32", "--study", study, "--no-progress",
            "--storage", f"sqlite:///{tmp_path}/study.db", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
            "--output", str(tmp_path / "out"), *argv]


def _nothing_left(tmp_path: Path) -> bool:
    return not any((tmp_path / f).exists() for f in ("study.db", "mlflow.db", "out"))


def test_missing_cifar10_is_refused_before_anything_exists(tmp_path, capsys):
    rc = main(_sweep(tmp_path, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data")))
    err = capsys.readouterr().err
    assert rc == 2 and "CIFAR-10 is not in" in err
    assert f"CIFAR10('{tmp_path / 'data'}', download=True)" in err and "--download" in err
    assert _nothing_left(tmp_path)  # no study, no MLflow store or runs, no ranking


def test_offline_download_says_so_instead_of_a_urlerror(tmp_path, capsys, monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):  # a refused connection, as offline
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # urlopen's global opener reads the proxies once, when first built: build it afresh now, and again after,
    # so this dead proxy does not outlive the test in this worker (later tests talk to servers on 127.0.0.1)
    urllib.request.install_opener(None)
    try:
        rc = main(_sweep(tmp_path, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--download"))
    finally:
        urllib.request.install_opener(None)
    err = capsys.readouterr().err
    assert rc == 2 and "could not download CIFAR-10" in err and "offline" in err and "Traceback" not in err
    assert "download=True)" in err and _nothing_left(tmp_path) and not (tmp_path / "data").exists()


@pytest.mark.parametrize("argv, message", [
    (["--mode", "penalty"], "--mode penalty needs --penalty-per-kwh"),
    (["--penalty-per-kwh", "100"], "applies only to --mode penalty"),
    (["--synthetic-samples", "64"], "applies only to --dataset synthetic"),
    (["--download"], "apply only to --dataset cifar10"),
])
def test_options_that_do_not_apply_are_refused(tmp_path, capsys, argv, message):
    assert main(_sweep(tmp_path, *argv)) == 2
    assert message in capsys.readouterr().err and _nothing_left(tmp_path)


def test_a_sweep_whose_every_trial_failed_exits_non_zero(tmp_path, capsys):
    rc = main(_sweep(tmp_path, "--max-steps", "2", "--archs", "tests.search_runner:broken_model"))
    err = capsys.readouterr().err
    assert rc == 1 and "every trial of study 's' failed" in err and "boom" in err
    # the same study on another dataset is refused, naming the difference and the fix, not reprinted
    rc = main(_sweep(tmp_path, "--max-steps", "2", "--archs", "tests.search_runner:broken_model",
                     "--dataset", "synthetic", "--synthetic-samples", "64"))
    err = capsys.readouterr().err
    assert rc == 2 and "dataset: study has 'digits', this run has 'synthetic'" in err and "--study s-2" in err


def _fresh_clone(tmp_path: Path) -> Path:
    """The repository as a fresh clone has it: its tracked (and not ignored) files, committed, nothing else."""
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (clone / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, clone / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=clone, check=True)
    return clone


@pytest.mark.skipif(shutil.which("git") is None, reason="mlflow run records the git commit")
def test_mlflow_run_sweep_then_report_on_a_fresh_clone(tmp_path):
    """The README's MLproject flow, no venv activated: only `python` (the env running mlflow) is on PATH,
    not `green-mlops`; no tracking URI set, so MLflow's default store (mlflow.db where `mlflow run` starts)."""
    clone = _fresh_clone(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # as an activated env has it
    (bin_dir / "python").chmod(0o755)
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith("MLFLOW_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")},
           "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    assert shutil.which("green-mlops", path=env["PATH"]) is None

    def mlflow_run(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "mlflow", "run", ".", *args, "--env-manager", "local"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        return r

    sweep = mlflow_run("-e", "sweep", "-P", "archs=lenet", "-P", "batch_sizes=64", "-P", "max_steps=3")
    assert "experiment 'green-mlops-sweep'" in sweep.stdout
    client = MlflowClient(f"sqlite:///{clone}/mlflow.db")
    exp = client.get_experiment_by_name("green-mlops-sweep")  # the experiment the output names
    runs = client.search_runs([exp.experiment_id])
    parent = [x for x in runs if x.data.tags.get("green_mlops.sweep.role") == "parent"]
    trials = [x for x in runs if x.data.tags.get("green_mlops.sweep.role") == "trial"]
    assert len(parent) == 1 and len(trials) == 1
    assert trials[0].data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    project = client.get_run(parent[0].data.tags["green_mlops.sweep.project_run"])  # `mlflow run`'s own run
    assert project.data.tags["mlflow.project.entryPoint"] == "sweep" and project.info.status == "FINISHED"
    assert project.data.tags["green_mlops.sweep.experiment"] == "green-mlops-sweep"
    assert (clone / "green_mlops_sweep" / "ranking.csv").exists()

    report = mlflow_run("-e", "report")
    assert "report: green_mlops_report/report.html (1 runs" in report.stdout, report.stdout
    assert (clone / "green_mlops_report" / "report.html").exists()
    # everything written is an ignored output: the clone stays clean
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout == ""
