"""``green-mlops report`` and the notebook on a real MLflow experiment (SQLite) shaped like a sweep.

The experiment holds a sweep parent run, two trial runs trained for real with EnergyCallback on
scikit-learn's digits (this machine's hardware tags and estimated CPU/DRAM energy), eight trial runs
logged through MlflowClient the way the callback logs them on an H100 host (metrics, epoch histories,
summary JSON and power trace artifacts), a failed run and a finished run without energy metrics.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from pytorch_lightning.loggers import MLFlowLogger

from green_mlops.analysis import load_csv, load_runs
from green_mlops.commands import report as cli
from green_mlops.lightning import EnergyCallback
from tests.lightning_digits import DigitsMLP, digits_loaders

EXPERIMENT = "analysis-sweep"
ROOT = Path(__file__).resolve().parents[1]
H100_TAGS = {"green_mlops.hw.cpu_model": "Intel Xeon Platinum 8480+", "green_mlops.hw.cpu_count": "16",
             "green_mlops.hw.ram_gb": "232.0", "green_mlops.hw.gpu_count": "1",
             "green_mlops.hw.gpu_names": "NVIDIA H100 80GB HBM3", "green_mlops.hw.gpu_driver": "580.65",
             "green_mlops.hw.virtual_machine": "true", "green_mlops.method.gpu": "nvml-energy-counter",
             "green_mlops.provenance.gpu": "measured", "green_mlops.method.cpu": "tdp-utilisation-model",
             "green_mlops.provenance.cpu": "estimated", "green_mlops.method.dram": "per-gb-model",
             "green_mlops.provenance.dram": "estimated"}
# arch: (MACs per sample, trainable params, model bytes)
ARCHS = {"LeNet": (6.5e5, 6.2e4, 2.5e5), "MobileNetV2": (9.4e7, 2.3e6, 9.4e6),
         "VGG16": (3.1e8, 1.47e7, 5.9e7), "ResNet18": (5.6e8, 1.12e7, 4.5e7)}


def _logged_h100_run(client: MlflowClient, exp_id: str, parent: str, n: int, arch: str, bs: int, tmp: Path) -> str:
    """A trial run with what EnergyCallback logs on an H100 (plausible numbers from a simple power model)."""
    macs, params, size = ARCHS[arch]
    util = min(0.97, 0.35 + 0.25 * math.log2(bs / 32))
    gpu_W, cpu_W, dram_W = 90 + 260 * util, 95.0, 18.0
    per_sample_s = 2.2e-13 * macs / util + 4e-6
    train_n, test_n, epochs = 100_000, 10_000, 2
    fit_s, test_s = per_sample_s * train_n * 1.1, per_sample_s * test_n / 3
    power = gpu_W + cpu_W + dram_W
    fit_J, test_J = power * fit_s, (gpu_W * 0.8 + cpu_W + dram_W) * test_s
    acc = {"LeNet": 0.68, "MobileNetV2": 0.88, "VGG16": 0.9, "ResNet18": 0.91}[arch] - 0.01 * math.log2(bs / 32)
    tags = {"mlflow.parentRunId": parent, "green_mlops.sweep.role": "trial", "green_mlops.sweep.trial": str(n),
            "mlflow.runName": f"trial {n}: {arch} bs{bs}", **H100_TAGS}
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    now = int(time.time() * 1000)
    train_J = fit_J / 1.1
    end = {"energy/fit_J": fit_J, "time/fit_s": fit_s, "energy/test_J": test_J, "time/test_s": test_s,
           "energy_per_sample_train_J": train_J / train_n, "energy/test_epoch_J": test_J * 0.98,
           "energy_per_sample_inference_J": test_J * 0.98 / test_n, "val_acc": acc, "test_acc": acc,
           "macs_param": macs / params, "energy_per_sample": fit_J / train_n, "parameters": params,
           "energy/gpu_J": gpu_W * fit_s, "energy/cpu_J": cpu_W * fit_s, "energy/dram_J": dram_W * fit_s,
           "energy/training_J": fit_J, "accuracy": acc}
    metrics = [Metric(k, v, now, 2 * train_n // bs) for k, v in end.items()]
    for e in range(epochs):
        step = (e + 1) * train_n // epochs // bs
        metrics += [Metric("energy/train_epoch_J", train_J / epochs, now, step),
                    Metric("energy/val_epoch_J", fit_J * 0.04, now, step),
                    Metric("val_loss", 1.6 / (e + 1) + (1 - acc), now, step), Metric("val_acc", acc - 0.1 / (e + 1), now, step)]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in {
        "arch": arch, "batch_size": bs, "lr": 0.001, "dataset": "cifar10", "macs": int(macs),
        "trainable_params": int(params), "total_params": int(params), "model_size_bytes": int(size)}.items()])
    for stage, secs, total, gpu in (("fit", fit_s, fit_J, gpu_W), ("test", test_s, test_J, gpu_W * 0.8)):
        summary = {"stage": stage, "energy_J": total, "metrics": {"energy_per_sample_inference_J": end[
            "energy_per_sample_inference_J"]} if stage == "test" else {},
            "local": {"duration_s": secs, "total_J": total, "domains": {
                "gpu": {"energy_J": gpu * secs}, "cpu": {"energy_J": cpu_W * secs}, "dram": {"energy_J": dram_W * secs}},
                "sources": [{"domain": "gpu", "provenance": "measured", "method": "nvml-energy-counter"},
                            {"domain": "cpu", "provenance": "estimated", "method": "tdp-utilisation-model"},
                            {"domain": "dram", "provenance": "estimated", "method": "per-gb-model"}]}}
        d = tmp / run_id
        d.mkdir(exist_ok=True)
        (d / f"{stage}_summary.json").write_text(json.dumps(summary))
        pd.DataFrame({"t_s": [0.0, 0.1, 0.2], "gpu0.util_pct": [util * 100] * 3, "gpu0.mem_util_pct": [40.0] * 3,
                      "host.cpu_util_pct": [20.0] * 3}).to_parquet(d / f"{stage}_trace.parquet")
        client.log_artifact(run_id, str(d / f"{stage}_summary.json"), "green_mlops")
        client.log_artifact(run_id, str(d / f"{stage}_trace.parquet"), "green_mlops")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _trained_run(uri: str, exp_id: str, parent: str, n: int, bs: int, root: Path) -> str:
    """A trial run trained for real: one epoch of the digits MLP, then its test, metered by EnergyCallback."""
    client = MlflowClient(uri)
    tags = {**resolve_tags(), "mlflow.parentRunId": parent, "green_mlops.sweep.role": "trial",
            "green_mlops.sweep.trial": str(n), "mlflow.runName": f"trial {n}: mlp bs{bs}"}
    run_id = client.create_run(exp_id, tags=tags).info.run_id
    client.log_batch(run_id, params=[Param("arch", "mlp"), Param("batch_size", str(bs)), Param("lr", "0.1"),
                                     Param("dataset", "digits")])
    logger = MLFlowLogger(tracking_uri=uri, run_id=run_id)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=logger,
                         callbacks=[EnergyCallback(interval=0.05)], enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=root)
    train, val = digits_loaders(bs)
    trainer.fit(DigitsMLP(), train, val)
    trainer.test(trainer.lightning_module, val, verbose=False)
    return run_id


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """(tracking URI, experiment name, run ids) of the sweep-shaped experiment described above."""
    root = tmp_path_factory.mktemp("analysis")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREEN_MLOPS_SPOOL_DIR", str(root / "spool"))
        client = MlflowClient(uri)
        exp_id = client.create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
        parent = client.create_run(exp_id, tags={"green_mlops.sweep.role": "parent",
                                                 "mlflow.runName": "sweep study"}).info.run_id
        client.log_batch(parent, metrics=[Metric("energy/training_J", 1e6, 0, 0)])
        client.set_terminated(parent, "FINISHED")
        ids = {"trained": [_trained_run(uri, exp_id, parent, n, bs, root) for n, bs in ((0, 32), (1, 128))]}
        ids["logged"] = [_logged_h100_run(client, exp_id, parent, 2 + i, arch, bs, root)
                         for i, (arch, bs) in enumerate((a, b) for a in ARCHS for b in (32, 256))]
        failed = client.create_run(exp_id, tags={"mlflow.runName": "crashed"}).info.run_id
        client.log_metric(failed, "energy/fit_J", 5.0)
        client.set_terminated(failed, "FAILED")
        plain = client.create_run(exp_id, tags={"mlflow.runName": "no meter"}).info.run_id
        client.log_metric(plain, "accuracy", 0.5)
        client.set_terminated(plain, "FINISHED")
    return uri, EXPERIMENT, ids


def report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="green-mlops report")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_loader_one_row_per_finished_trial(experiment):
    uri, name, ids = experiment
    runs = load_runs(name, uri)
    assert sorted(runs["run_id"]) == sorted(ids["trained"] + ids["logged"])  # no parent, failed or meterless run
    assert any("without energy metrics" in n and "no meter" in n for n in runs.attrs["notes"])
    real = runs.set_index("run_id").loc[ids["trained"]]
    assert list(real["batch_size"]) == [32, 128] and real["batch_size"].dtype.kind in "if"
    assert (real["train_samples"] == 1400).all() and (real["inference_samples"] == 397).all()
    assert (real["model"] == "mlp").all() and real["hardware"].str.contains("CPUs").all()
    assert real["provenance"].str.contains("cpu: estimated").all()
    assert (real["train_energy_J"] > 0).all() and (real["train_util_device"] == "cpu").all()
    h100 = runs.set_index("run_id").loc[ids["logged"]]
    assert (h100["hardware"] == "1× NVIDIA H100 80GB HBM3 + Intel Xeon Platinum 8480+ (16 CPUs)").all()
    assert h100["provenance"].str.startswith("gpu: measured (nvml-energy-counter); cpu: estimated").all()
    assert (h100["train_samples"] == 100_000).all() and (h100["inference_samples"] == 10_000).all()
    assert h100["train_power_gpu_W"].between(90, 350).all() and h100["train_util_device"].eq("gpu").all()


def test_report_html_is_self_contained_and_logged(experiment, tmp_path, capsys):
    uri, name, ids = experiment
    assert report("--experiment", name, "--tracking-uri", uri, "--output", str(tmp_path / "out")) == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "energy is linear in time" in printed
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6  # Figs. 2, 3, 5, 6, 7 and energy against time
    assert "<script" not in page and "src=\"http" not in page
    assert "NVIDIA H100 80GB HBM3" in page and "nvml-energy-counter" in page and "tdp-utilisation-model" in page
    text = re.sub(r"base64,[A-Za-z0-9+/=]+", "", page)
    assert "NaN" not in text and ">nan<" not in text
    assert "correlations need at least 3" in page  # the two CPU runs are too few for their own correlation
    assert "Lasso predicting energy_per_sample_train_J" in page
    saved = load_csv(tmp_path / "out")
    assert len(saved) == len(ids["trained"] + ids["logged"])
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    reports = client.search_runs([exp.experiment_id], "tags.`green_mlops.analysis.role` = 'report'")
    assert len(reports) == 1 and reports[0].info.status == "FINISHED"
    logged = {a.path for a in client.list_artifacts(reports[0].info.run_id, "report")}
    assert {"report/report.html", "report/runs.csv", "report/energy_predictor.joblib"} <= logged
    # the report run is not analysed by the next report
    assert len(load_runs(name, uri, details=False)) == len(saved)


def test_report_markdown_for_a_pull_request(experiment, tmp_path):
    uri, name, _ = experiment
    assert report("--experiment", name, "--tracking-uri", uri, "--output", str(tmp_path), "--format", "md",
                  "--no-log", "--no-traces") == 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# Energy report: analysis-sweep")
    assert "| finding | paper | these runs (95 % interval) | agrees when | verdict | why |" in md
    pngs = sorted((tmp_path / "figures").glob("*.png"))
    assert len(pngs) == 6 and all(f"](figures/{p.name})" in md for p in pngs)
    assert not re.search(r"\bnan\b", md, re.I)


@pytest.mark.filterwarnings("error::pandas.errors.PerformanceWarning")  # read_csv frames: one block a column
def test_report_from_saved_runs_csv(experiment, tmp_path):
    uri, name, _ = experiment
    assert report("--experiment", name, "--tracking-uri", uri, "--output", str(tmp_path / "a"), "--no-log",
                  "--no-traces", "--format", "md") == 0
    saved = pd.read_csv(tmp_path / "a" / "runs.csv")  # as wide as a real sweep's: > 100 numeric columns
    extra = pd.DataFrame({f"params.extra_{i}": float(i) for i in range(110)}, index=saved.index)
    pd.concat([saved, extra], axis=1).to_csv(tmp_path / "a" / "runs.csv", index=False)
    assert report("--runs", str(tmp_path / "a"), "--output", str(tmp_path / "b"), "--format", "md") == 0
    assert "Spearman" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize("case, expected", [
    ("missing", "no MLflow experiment named 'nope'"),
    ("empty", "has no finished runs to analyse; log runs first: `green-mlops sweep"),
    ("no-energy", "none with energy metrics"),
])
def test_bad_input_says_what_to_run_first(tmp_path, capsys, case, expected):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("other")
    if case == "no-energy":
        run = client.create_run(exp_id).info.run_id
        client.log_metric(run, "val_acc", 0.9)
        client.set_terminated(run, "FINISHED")
    name = "nope" if case == "missing" else "other"
    assert report("--experiment", name, "--tracking-uri", uri, "--output", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    if case == "missing":
        assert "'other'" in err  # names the experiments that do exist
    assert not (tmp_path / "out").exists()


def test_notebook_runs_end_to_end(experiment, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    uri, name, _ = experiment
    monkeypatch.setenv("GREEN_MLOPS_EXPERIMENT", name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("GREEN_MLOPS_REPORT_DIR", str(tmp_path / "nb"))
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # figures inline


def test_genai_sweep_levels_become_rows_with_table6(tmp_path):
    """A `green-mlops genai`-shaped experiment: a parent per LLM sweep, one nested run per request rate."""
    uri = f"sqlite:///{tmp_path / 'g.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("llm", artifact_location=str(tmp_path / "art"))
    for model, size in (("llama-1b", 1.2e9), ("llama-8b", 8.0e9)):
        parent = client.create_run(exp_id, tags={"mlflow.runName": f"genai {model}", **H100_TAGS}).info.run_id
        client.log_batch(parent, params=[Param("model", model)], metrics=[Metric("energy_per_request_J", 1.0, 0, 0)])
        for level, rps in enumerate((1, 2, 5, 10, 20)):
            per_request = size / 1e9 * (30.0 / rps + 2.0)  # falls with the rate, then levels off
            tags = {"mlflow.parentRunId": parent, "mlflow.runName": f"{rps} rps", **H100_TAGS}
            run = client.create_run(exp_id, tags=tags).info.run_id
            metrics = {"rate_rps": rps, "request_rate": rps, "energy_per_request_J": per_request,
                       "energy_per_sample": per_request, "energy_per_output_token_J": per_request / 200,
                       "cache_hit_rate": 0.1 + 0.02 * level, "average_output_token_length": 200 - level}
            client.log_batch(run, params=[Param("rate_rps", str(rps)), Param("level", str(level))],
                             metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
            client.set_terminated(run, "FINISHED")
        client.set_terminated(parent, "FINISHED")
    runs = load_runs("llm", uri)
    assert len(runs) == 10 and set(runs["model"]) == {"llama-1b", "llama-8b"}  # parents out, their model inherited
    assert any("2 parent run(s) left out" in n for n in runs.attrs["notes"])
    assert report("--experiment", "llm", "--tracking-uri", uri, "--output", str(tmp_path / "out"), "--format", "md",
                  "--no-log") == 0
    corr = pd.read_csv(tmp_path / "out" / "correlations.csv").set_index("metric")
    assert corr.loc["request_rate", "spearman_rho"] < -0.5 and corr.loc["request_rate", "target"] == "energy_per_sample"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## GenAI metrics (Table 6)" in md and "Lasso predicting energy_per_sample from" in md


def test_committed_h100_results_rebuild_and_report(tmp_path):
    """results/h100/runs.csv is what scripts/h100_runs_csv.py makes of the zoo CSVs, and the report reads it."""
    import subprocess
    import sys

    rebuilt = tmp_path / "runs.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "h100_runs_csv.py"), "--output", str(rebuilt)], check=True,
                   capture_output=True)
    pd.testing.assert_frame_equal(pd.read_csv(rebuilt), pd.read_csv(ROOT / "results" / "h100" / "runs.csv"))
    runs = load_csv(ROOT / "results" / "h100")
    assert len(runs) == 32 and runs["provenance"].str.startswith("gpu: measured (nvml-energy-counter)").all()
    assert (runs["train_samples"] == 50_000).all() and runs["inference_stage"].eq("predict").all()
    assert report("--runs", str(ROOT / "results" / "h100"), "--output", str(tmp_path / "out"), "--format", "md") == 0
    md = (tmp_path / "out" / "report.md").read_text()
    # Table 3 compares the 16 models at the paper's batch size; the interval reaches below 0.7: cannot tell
    assert "at batch size 128: ρ = 0.74 [0.33, 0.95] (n = 16 configurations" in md and "→ cannot tell" in md
    assert "- energy: gross (no idle baseline in this data)" in md  # the zoo export has no net inference energy
    assert "→ too few runs" in md  # one run per batch size: no interval on the optimum
    assert "correlations over the 16 runs at batch size 128" in md and not re.search(r"\bnan\b", md, re.I)


def test_notebook_runs_on_committed_results(tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.delenv("GREEN_MLOPS_EXPERIMENT", raising=False)
    monkeypatch.delenv("GREEN_MLOPS_REPORT_DIR", raising=False)
    nb = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    assert "32 runs from results/h100/runs.csv" in text and "synthetic data (random labels)" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4


def test_captions_say_whether_repeats_are_averaged_or_drawn_one_point_each():
    """Fig. 6 and energy-against-time draw every run: their caption must not say repeats were averaged."""
    import pandas as pd

    from green_mlops.analysis import figures

    runs = pd.DataFrame({"model": ["lenet", "lenet"], "batch_size": [64, 64], "repeat": [0, 1]})
    assert "repeats averaged" in figures._scope(runs)
    assert "each repeat its own point" in figures._scope(runs, per_run=True)
    assert "repeat" not in figures._scope(runs.iloc[:1], per_run=True)
