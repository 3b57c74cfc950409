"""`green-mlops sweep` end to end on the CPU: zoo models trained on digits, a real Optuna study, a real
MLflow store, the ranking CSV and plot; bad input refused before training; `mlflow run` of the project."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


@pytest.mark.skipif(shutil.which("git") is None, reason="mlflow run records the git commit")
def test_mlflow_run_of_the_sweep_entry_point(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")},
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "sweep", "--env-manager", "local",
                        "--experiment-name", "projects", "-P", "archs=lenet", "-P", "batch_sizes=64",
                        "-P", "max_steps=5", "-P", f"storage=sqlite:///{tmp_path}/study.db", "-P", "study=proj",
                        "-P", f"output={tmp_path}/out"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("projects").experiment_id])
    parent = [x for x in runs if x.data.tags.get("green_mlops.sweep.role") == "parent"]
    trials = [x for x in runs if x.data.tags.get("green_mlops.sweep.role") == "trial"]
    assert len(parent) == 1 and parent[0].data.tags.get("mlflow.project.entryPoint") == "sweep"
    assert len(trials) == 1 and trials[0].data.tags["mlflow.parentRunId"] == parent[0].info.run_id
    assert (tmp_path / "out" / "ranking.csv").exists()
