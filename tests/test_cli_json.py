"""``--json`` on every command that prints a result (stdout holds the JSON alone), and every numeric option
refused with a message naming what a valid value looks like."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from green_mlops.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    """The command as a user pipes it: a subprocess whose stdout is read apart from its stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "green_mlops", *args], capture_output=True, text=True, env=env,
                          timeout=900, **kw)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A three-trial sweep on digits, piped as `green-mlops sweep ... --json | ...` would be."""
    root = tmp_path_factory.mktemp("json-sweep")
    store = f"sqlite:///{root}/mlflow.db"
    r = _run("sweep", "--archs", "lenet", "--batch-sizes", "32,64,128", "--max-steps", "4", "--lrs", "0.05",
             "--storage", f"sqlite:///{root}/study.db", "--tracking-uri", store, "--experiment", "json",
             "--output", str(root / "out"), "--json")
    return root, store, r


def test_sweep_json_is_the_whole_stdout(swept):
    root, store, r = swept
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(r.stdout)  # nothing but the JSON: trial lines, progress, Lightning and MLflow went to stderr
    assert {"study", "experiment", "parent_run_id", "complete", "ranking_csv", "search_cost", "mlflow_ui",
            "trials"} <= set(data)
    assert data["complete"] and data["tracking_uri"] == store and "mlflow ui --backend-store-uri" in data["mlflow_ui"]
    assert sorted(t["batch_size"] for t in data["trials"]) == [32, 64, 128]
    assert all(t["state"] == "COMPLETE" and t["training_J"] > 0 and 0 <= t["accuracy"] <= 1 for t in data["trials"])
    assert "pareto_rank" in r.stderr and "trial 0:" in r.stderr  # the human summary still shows, on stderr


def test_report_json(swept, tmp_path, capsys):
    root, store, r = swept
    assert r.returncode == 0, r.stderr[-3000:]
    rc = main(["report", "--experiment", "json", "--tracking-uri", store, "--output", str(tmp_path / "rep"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    data = json.loads(captured.out)
    assert {"report", "format", "files", "runs", "energy_basis", "findings", "mlflow_run_id"} <= set(data)
    assert data["runs"] == 3 and Path(data["report"]).exists() and data["format"] == "html"
    assert all({"claim", "here", "verdict"} <= set(f) for f in data["findings"])
    assert "report:" in captured.err


def test_measure_json_keeps_the_command_output_on_stderr(tmp_path):
    r = _run("measure", "--interval", "0.05", "--json", "--", sys.executable, "-c", "print('hi'); raise SystemExit(3)",
             cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    data = json.loads(r.stdout)
    assert data["exit_code"] == 3 and {"command", "result", "findings", "idle", "interval_s"} <= set(data)
    assert all(s["provenance"] in ("measured", "estimated") for s in data["result"]["sources"])
    assert "hi" in r.stderr and "energy J" in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written without --output or --trace


def test_measure_json_and_output_dash_are_one_too_many(capsys):
    assert main(["measure", "--json", "--output", "-", "--", "true"]) == 2
    assert "drop --output -" in capsys.readouterr().err


def test_sync_json(tmp_path, capsys):
    assert main(["sync", "--spool-dir", str(tmp_path / "spool"), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data == {"spool_dir": str(tmp_path / "spool"), "delivered_metrics": 0, "remaining_metrics": 0,
                    "rejected_metrics": 0, "uploaded_files": 0, "remaining_files": 0, "errors": {}, "complete": True}


def test_train_json(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    rc = main(["train", "--arch", "lenet", "--max-steps", "2", "--tracking-uri", store, "--output",
               str(tmp_path / "o"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    data = json.loads(captured.out)
    assert data["arch"] == "lenet" and data["steps"] == 2 and data["train_energy_J"] > 0 and data["run_id"]
    assert data["tracking_uri"] == store and set(data["methods"]) >= {"cpu"}
    assert "validation accuracy" in captured.err  # the table, on stderr


def test_list_archs_json(capsys):
    assert main(["sweep", "--list-archs", "--json"]) == 0
    assert "lenet" in json.loads(capsys.readouterr().out)["archs"]


BAD_NUMBERS = [
    (["sweep", "--epochs", "0"], "--epochs", "whole number ≥ 1"),
    (["sweep", "--n-trials", "1.5"], "--n-trials", "is not a whole number"),
    (["sweep", "--max-steps", "-1"], "--max-steps", "whole number ≥ 0"),
    (["sweep", "--heartbeat", "0"], "--heartbeat", "whole number ≥ 1"),
    (["sweep", "--idle-seconds", "-1"], "--idle-seconds", "0 or more seconds"),
    (["sweep", "--momentum", "nan"], "--momentum", "non-negative number (e.g. 0.9)"),
    (["sweep", "--energy-budget-J", "0"], "--energy-budget-J", "positive number (e.g. 5000)"),
    (["sweep", "--prune-every", "0"], "--prune-every", "fraction above 0 and at most 1"),
    (["sweep", "--prune-margin", "1.5"], "--prune-margin", "fraction from 0 to 1"),
    (["sweep", "--synthetic-samples", "x"], "--synthetic-samples", "is not a whole number"),
    (["train", "--lr", "-0.1"], "--lr", "positive number (e.g. 0.001)"),
    (["train", "--batch-size", "0"], "--batch-size", "whole number ≥ 1"),
    (["train", "--interval", "0"], "--interval", "interval"),
    (["train", "--seed", "-3"], "--seed", "whole number ≥ 0"),
    (["measure", "--idle", "inf", "--", "true"], "--idle", "0 or more seconds"),
    (["measure", "--prometheus-port", "70000", "--", "true"], "--prometheus-port", "port from 1 to 65535"),
    (["demo", "--meter-only", "--epochs", "0"], "--epochs", "whole number ≥ 1"),
    (["genai", "--duration", "0"], "--duration", "more than 0 seconds"),
    (["genai", "--max-tokens", "0"], "--max-tokens", "whole number ≥ 1"),
    (["genai", "--top-p", "1.5"], "--top-p", "fraction above 0 and at most 1"),
    (["genai", "--top-k", "-2"], "--top-k", "whole number ≥ -1"),
    (["genai", "--clock-offset", "inf"], "--clock-offset", "finite number"),
    (["genai", "--model-parameters", "-5"], "--model-parameters", "positive number"),
]


@pytest.mark.parametrize("argv, option, fix", BAD_NUMBERS, ids=[" ".join(a[:3]) for a, _, _ in BAD_NUMBERS])
def test_bad_numbers_are_refused_naming_the_fix(argv, option, fix, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and fix in err and "Traceback" not in err, err
