"""``auto_find_batch_size``: transformers retries its training loop after an out-of-memory error, in one ``train()``.

A real Trainer on the CPU (the tiny BERT of :mod:`tests.hf_tiny`) whose forward raises CUDA's out-of-memory
``RuntimeError`` on batches larger than it holds, once six forward passes have succeeded: accelerate's
``find_executable_batch_size`` catches it, shrinks the batch (×0.9) and starts the loop again. That must stay one
metered run and one MLflow run, ``FINISHED``, with the first attempt's energy in the totals and the retry on record.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from transformers import Trainer

from green_mlops import names
from green_mlops.transformers import EnergyCallback
from tests.hf_tiny import FailingTrainer, OutOfMemoryBert, tiny_trainer

STEPS = 12
FIRST = 3  # optimiser steps the batch of 8 does (6 forward passes, accumulation 2) before it runs out of memory
OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
TRIED = names.param(names.BATCH_SIZES_TRIED)


def _trainer(tmp_path, report_to, cb, cls=Trainer, **kwargs) -> Trainer:
    return tiny_trainer(tmp_path / "out", report_to, [cb], cls=cls, model_cls=OutOfMemoryBert, max_steps=STEPS,
                        per_device_train_batch_size=8, auto_find_batch_size=True, **kwargs)


def _runs(hf_store):
    client = MlflowClient(hf_store)
    return client, client.search_runs([client.get_experiment_by_name("hf").experiment_id], order_by=["start_time"])


def _summary(client, run, tmp_path) -> dict:
    path = client.download_artifacts(run.info.run_id, f"{names.ARTIFACT_DIR}/{names.summary_file('train')}",
                                     str(tmp_path))
    return json.loads(Path(path).read_text())


def _retry_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "auto_find_batch_size retries" in r.getMessage()]


@pytest.mark.parametrize("own_run", [False, True], ids=["mlflow-callback-run", "own-run"])
def test_out_of_memory_then_retry_is_one_finished_run(tmp_path, hf_store, own_run, caplog):
    """One MLflow run, FINISHED; steps 1–3 of the batch of 8, then the retry's 12 from step 4; both attempts'
    energy in the totals; the batch sizes tried as a param and in the summary; one warning."""
    caplog.set_level(logging.WARNING, logger="green_mlops")
    cb = EnergyCallback(interval=0.02, tracking_uri=hf_store if own_run else None, experiment="hf")
    trainer = _trainer(tmp_path, "none" if own_run else ["mlflow"], cb)
    trainer.train()
    assert (trainer.state.global_step, trainer.state.train_batch_size) == (STEPS, 7)
    client, runs = _runs(hf_store)
    assert [r.info.status for r in runs] == ["FINISHED"]
    run = runs[0]
    history = sorted(client.get_metric_history(run.info.run_id, names.ENERGY_TOTAL), key=lambda m: m.step)
    assert [m.step for m in history] == list(range(1, FIRST + STEPS + 1))  # each step once, one rising axis
    assert all(a.value <= b.value for a, b in zip(history, history[1:]))  # cumulative across the retry
    assert run.data.params[TRIED] == "8,7"
    attempts = _summary(client, run, tmp_path)["attempts"]
    assert attempts == cb.summary["attempts"]
    first, retry = attempts
    assert (first["batch_size"], first["steps"], first["samples"], first["first_step"]) == (8, FIRST, 48, 1)
    assert first["error"].startswith(OOM) and first["energy_J"] > 0
    assert (retry["batch_size"], retry["steps"], retry["first_step"], retry["error"]) == (7, STEPS, FIRST + 1, None)
    assert retry["samples"] == 96 + 10 * 7  # an epoch of 96 (13 batches of 7 and one of 5), then 5 steps of 2 × 7
    m = run.data.metrics
    assert m[names.energy("train")] >= retry["energy_J"] + first["energy_J"]  # nothing of the first attempt dropped
    assert cb.summary["status"] == "success" and cb.summary["energy_J"] == pytest.approx(m[names.energy("train")])
    train_J = cb._train_J + cb._interrupted_J  # every training epoch's energy, the interrupted one's part included
    assert cb._interrupted_J > 0 and train_J > sum(
        x.value for x in client.get_metric_history(run.info.run_id, names.epoch_energy("train")))
    assert m[names.metric(names.ENERGY_PER_SAMPLE_TRAIN)] == pytest.approx(train_J / (48 + retry["samples"]))
    assert len(_retry_warnings(caplog)) == 1


def test_several_retries_through_trainer_log_warn_once(tmp_path, caplog, monkeypatch):
    """No MLflow: 8 → 7 → 6 → 5, metrics through ``Trainer.log`` at rising steps; one warning for all retries."""
    caplog.set_level(logging.WARNING, logger="green_mlops")
    monkeypatch.setattr(OutOfMemoryBert, "max_batch", 5)
    cb = EnergyCallback(interval=0.02)
    trainer = _trainer(tmp_path, "none", cb)
    trainer.train()
    steps = [h["step"] for h in trainer.state.log_history if names.ENERGY_TOTAL in h]
    assert steps == list(range(1, FIRST + STEPS + 1))
    attempts = cb.summary["attempts"]
    assert [(a["batch_size"], a["steps"]) for a in attempts] == [(8, FIRST), (7, 0), (6, 0), (5, STEPS)]
    assert all(a["error"].startswith(OOM) for a in attempts[:-1]) and attempts[-1]["error"] is None
    assert cb.summary["status"] == "success" and len(_retry_warnings(caplog)) == 1
    assert (tmp_path / "out" / names.ARTIFACT_DIR / names.summary_file("train")).exists()


def test_exception_after_a_retry_ends_the_run_failed(tmp_path, hf_store):
    """Out of memory, a retry, then a step that raises: one run, FAILED, the caller gets the error unchanged."""
    cb = EnergyCallback(interval=0.02)
    trainer = _trainer(tmp_path, ["mlflow"], cb, cls=FailingTrainer)
    with pytest.raises(RuntimeError) as caught:
        trainer.train()
    assert caught.value is FailingTrainer.error
    client, runs = _runs(hf_store)
    assert [r.info.status for r in runs] == ["FAILED"]
    steps = sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, names.ENERGY_TOTAL))
    assert steps == list(range(1, FIRST + 5 + 1))  # FailingTrainer raises once 5 steps of the retry are done
    summary = _summary(client, runs[0], tmp_path)
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: boom in compute_loss"
    assert [a["error"] for a in summary["attempts"]][1] == "RuntimeError: boom in compute_loss"
    assert runs[0].data.params[TRIED] == "8,7"


def test_a_second_train_call_is_a_run_of_its_own(tmp_path, hf_store):
    """``train()`` twice on one trainer with ``auto_find_batch_size``: the first retries, the second (already at the
    batch size that fits) does not: two runs, both FINISHED, only the first records the batch sizes tried."""
    cb = EnergyCallback(interval=0.02, tracking_uri=hf_store, experiment="hf")
    trainer = _trainer(tmp_path, "none", cb)
    trainer.train()
    trainer.train()
    client, runs = _runs(hf_store)
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert [r.data.params.get(TRIED) for r in runs] == ["8,7", None]
    steps = sorted(m.step for m in client.get_metric_history(runs[1].info.run_id, names.ENERGY_TOTAL))
    assert steps == list(range(1, STEPS + 1)) and "attempts" not in cb.summary
