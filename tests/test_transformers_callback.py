"""green_mlops.transformers.EnergyCallback in real Hugging Face Trainer fine-tuning (CPU, no download).

A tiny randomly initialised BERT built locally, 24 optimiser steps with gradient accumulation 2: with
transformers' own MLflowCallback active (metrics land in its run, beside the user's params, none
overwritten), and without it (metrics reach ``Trainer.log`` at their own optimiser step).
"""
from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from green_mlops import names
from green_mlops.transformers import EnergyCallback

STEPS = 24
STEP_METRICS = [names.power("cpu"), names.POWER_TOTAL, names.energy("cpu"), names.ENERGY_TOTAL]
OURS = ["total_params", "trainable_params", "macs", "model_size_bytes", "carbon_intensity_g_per_kwh", "pue"]


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(1, 50, (n, 12), generator=g)
        self.y = (self.x[:, 0] > 25).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.y[i]}


def _trainer(tmp_path, report_to, cb):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2,
                        **{k: f"user-{k}" for k in OURS})  # the user's own names, as green_mlops' params
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=2,
                             gradient_accumulation_steps=2, max_steps=STEPS, learning_rate=1e-3, logging_steps=4,
                             report_to=report_to, use_cpu=True, save_strategy="no", disable_tqdm=True,
                             dataloader_num_workers=0)
    return Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=Tokens(),
                   callbacks=[cb])


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'hf.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "hf")
    return uri


def test_with_mlflow_callback_metrics_go_to_its_run(tmp_path, store):
    cb = EnergyCallback(interval=0.02)
    trainer = _trainer(tmp_path, ["mlflow"], cb)
    trainer.train()
    assert trainer.state.global_step == STEPS
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("hf").experiment_id])
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
