"""green_mlops.transformers.EnergyCallback in real Hugging Face Trainer fine-tuning (CPU, no download).

A tiny randomly initialised BERT built locally, 24 optimiser steps with gradient accumulation 2: with
transformers' own MLflowCallback active (metrics land in its run, beside the user's params, none
overwritten), and without it (metrics reach ``Trainer.log`` at their own optimiser step). A step that
raises: the energy before it is kept, the MLflow run ends FAILED, the caller gets the exception.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from transformers import Trainer

from green_mlops import names
from green_mlops.transformers import EnergyCallback
from tests.hf_tiny import FAIL_AT, FailingTrainer, tiny_trainer

STEPS = 24
STEP_METRICS = [names.power("cpu"), names.POWER_TOTAL, names.energy("cpu"), names.ENERGY_TOTAL]
OURS = ["total_params", "trainable_params", "macs", "model_size_bytes", "carbon_intensity_g_per_kwh", "pue"]


def _trainer(tmp_path, report_to, cb, cls=Trainer, **kwargs):
    return tiny_trainer(tmp_path / "out", report_to, [cb], cls=cls, max_steps=STEPS,
                        config={k: f"user-{k}" for k in OURS}, **kwargs)  # the user's own names, as our params


def test_with_mlflow_callback_metrics_go_to_its_run(tmp_path, hf_store):
    cb = EnergyCallback(interval=0.02)
    trainer = _trainer(tmp_path, ["mlflow"], cb)
    trainer.train()
    assert trainer.state.global_step == STEPS
    client, run = _the_run(hf_store)
    for key in STEP_METRICS:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(1, STEPS + 1)), key
    m, params = run.data.metrics, run.data.params
    assert m[names.energy("train")] > 0 and m[names.epoch_energy("train")] > 0
    assert m[names.metric(names.ENERGY_PER_SAMPLE_TRAIN)] > 0 and "loss" in m  # theirs and ours, one run
    for k in OURS:
        assert params[k] == f"user-{k}"  # the user's, untouched
    assert int(params[names.param("trainable_params")]) == sum(p.numel() for p in trainer.model.parameters())
    arts = {a.path for a in client.list_artifacts(run.info.run_id, names.ARTIFACT_DIR)}
    assert f"{names.ARTIFACT_DIR}/{names.summary_file('train')}" in arts
    assert cb.summary["energy_J"] > 0 and cb.summary["status"] == "success"


def test_without_mlflow_metrics_go_through_trainer_log(tmp_path):
    cb = EnergyCallback(interval=0.02, log_every_n_steps=2)
    trainer = _trainer(tmp_path, "none", cb)
    trainer.train()
    logged = {h["step"]: h for h in trainer.state.log_history if names.ENERGY_TOTAL in h}
    assert sorted(logged) == list(range(2, STEPS + 1, 2))
    assert all(set(STEP_METRICS) <= set(h) for h in logged.values())
    assert (tmp_path / "out" / names.ARTIFACT_DIR / names.summary_file("train")).exists()
    assert cb.summary["metrics"][names.energy("train")] > 0


def _the_run(hf_store):
    client = MlflowClient(hf_store)
    (run,) = client.search_runs([client.get_experiment_by_name("hf").experiment_id])
    return client, run


def _failed_run_with_energy_before(hf_store, tmp_path) -> dict:
    """The run ended FAILED with the steps before the error and their energy; its summary artifact says so."""
    client, run = _the_run(hf_store)
    assert run.info.status == "FAILED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, names.ENERGY_TOTAL))
    assert steps == list(range(1, FAIL_AT + 1))
    assert run.data.metrics[names.energy("train")] > 0
    path = client.download_artifacts(run.info.run_id, f"{names.ARTIFACT_DIR}/{names.summary_file('train')}", str(tmp_path))
    summary = json.loads(Path(path).read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: boom in compute_loss"
    assert summary["energy_J"] > 0
    return summary


@pytest.mark.parametrize("own_run", [False, True], ids=["mlflow-callback-run", "own-run"])
def test_exception_in_training_keeps_energy_and_marks_the_run_failed(tmp_path, hf_store, own_run):
    """A step that raises: the steps before it are in the run, the run ends FAILED, the caller gets the error."""
    cb = EnergyCallback(interval=0.02, tracking_uri=hf_store if own_run else None, experiment="hf")
    trainer = _trainer(tmp_path, "none" if own_run else ["mlflow"], cb, cls=FailingTrainer)
    with pytest.raises(RuntimeError) as caught:
        trainer.train()
    assert caught.value is FailingTrainer.error  # unchanged: the same object, type and message
    summary = _failed_run_with_energy_before(hf_store, tmp_path)
    assert cb.summary["status"] == "failed" and cb.summary["energy_J"] == pytest.approx(summary["energy_J"])


def test_callback_added_late_ends_the_failed_run_at_exit(tmp_path, hf_store):
    """``trainer.add_callback`` after the trainer was made, and an uncaught error: the run ends FAILED at exit."""
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "tests" / "hf_script.py"), "late-add", hf_store, str(tmp_path / "out")],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "RuntimeError: boom in compute_loss" in r.stderr, r.stderr[-3000:]
    _failed_run_with_energy_before(hf_store, tmp_path)


def test_partial_last_batch_counts_the_samples_it_holds(tmp_path, hf_store):
    """21 samples, batches of 4, accumulation 2, 2 epochs: 3 optimiser steps an epoch, the last on 4 + 1 samples;
    energy per sample divides the training epochs' energy by the 42 samples trained on (not 6 × 8 = 48)."""
    cb = EnergyCallback(interval=0.02)
    trainer = tiny_trainer(tmp_path / "out", ["mlflow"], [cb], samples=21, per_device_train_batch_size=4,
                           num_train_epochs=2)
    trainer.train()
    assert trainer.state.global_step == 6
    client, run = _the_run(hf_store)
    epochs = [m.value for m in client.get_metric_history(run.info.run_id, names.epoch_energy("train"))]
    per_sample = run.data.metrics[names.metric(names.ENERGY_PER_SAMPLE_TRAIN)]
    assert len(epochs) == 2 and per_sample == pytest.approx(sum(epochs) / 42, rel=1e-6)


@pytest.mark.timeout(300)
def test_accelerate_two_processes_meter_the_host_once(tmp_path, hf_store):
    """``accelerate launch`` with two processes on the CPU (gloo): both train; process zero meters CPU and DRAM,
    the other meters nothing (its host is metered already); the sums and the 24 samples land in one MLflow run."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(root), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(root / "tests" / "hf_script.py"), "ddp", hf_store, str(out)]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    zero, one = (json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1))
    assert zero["world_size"] == one["world_size"] == 2
    assert zero["global_step"] == one["global_step"] == 6 and zero["samples"] == one["samples"] == 12
    assert (zero["run"], sorted(zero["sources"])) == ("MeteredRun", ["cpu", "dram"])
    assert (one["run"], one["sources"]) == ("NullRun", [])
    summary = zero["summary"]  # summed over both processes, yet the host's energy once: one meter's worth
    assert summary["energy_J"] == pytest.approx(summary["local"]["total_J"], rel=1e-9)
    assert summary["local"]["domains"]["dram"]["energy_J"] == pytest.approx(zero["independent_dram_J"], rel=0.02)
    client, run = _the_run(hf_store)
    assert run.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, names.ENERGY_TOTAL))
    assert steps == list(range(1, 7))
    m = run.data.metrics
    assert m[names.energy("train")] == pytest.approx(summary["energy_J"])
    assert m[names.metric(names.ENERGY_PER_SAMPLE_TRAIN)] == pytest.approx(m[names.epoch_energy("train")] / 24)
