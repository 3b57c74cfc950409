"""EnergyCallback under both Lightning package names × every kind of logger, on real training (CPU).

{lightning.pytorch, pytorch_lightning} × {MLflow logger on SQLite, MLflow logger on a real ``mlflow server``,
CSV logger, TensorBoard logger (when tensorboard is installed), no logger, two loggers}: every promised
per-step metric at every optimiser step, and the artifacts in the MLflow run when there is one. Also: a
LightningModule whose hyperparameters use every name green_mlops logs trains to the end, and the user's
values stay as they were.
"""
from __future__ import annotations

import csv
import importlib
import importlib.util
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, TensorDataset

from green_mlops import names
from green_mlops.lightning import EnergyCallback

PACKAGES = [p for p in ("lightning.pytorch", "pytorch_lightning") if importlib.util.find_spec(p.split(".")[0])]
HAS_TB = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
LOGGERS = ["mlflow-sqlite", "mlflow-server", "csv", "tensorboard", "none", "two"]
STEPS = 6  # 96 samples, batch 16: one epoch
STEP_METRICS = [names.power("cpu"), names.power("dram"), names.POWER_TOTAL, names.energy("cpu"),
                names.energy("dram"), names.ENERGY_TOTAL]
ARTIFACTS = {f"{names.ARTIFACT_DIR}/{f}" for f in (names.trace_file("fit"), names.plot_file("fit"),
                                                     names.summary_file("fit"))}


def _module_class(pl):
    class Tiny(pl.LightningModule):
        def __init__(self, **hparams):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Linear(8, 2)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)
    return Tiny


def _data() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(96, 8, generator=g), torch.randint(0, 2, (96,), generator=g)),
                      batch_size=16)


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory):
    """One SQLite store for the module: its schema is made once (several seconds), each test has its own run."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def _loggers(kind, pkg, tmp_path, server, sqlite):
    loggers = importlib.import_module(f"{pkg}.loggers")
    if kind == "mlflow-sqlite":
        return [loggers.MLFlowLogger(experiment_name="m", tracking_uri=sqlite, artifact_location=str(tmp_path / "a"))]
    if kind == "mlflow-server":
        return [loggers.MLFlowLogger(experiment_name=f"m-{pkg}", tracking_uri=server.uri)]
    if kind == "csv":
        return [loggers.CSVLogger(tmp_path, name="csv")]
    if kind == "tensorboard":
        return [loggers.TensorBoardLogger(tmp_path, name="tb")]
    if kind == "two":
        return [loggers.MLFlowLogger(experiment_name="m", tracking_uri=sqlite, artifact_location=str(tmp_path / "a")),
                loggers.CSVLogger(tmp_path, name="csv")]
    return []


def _fit(pkg, loggers, tmp_path, cb, **hparams):
    pl = importlib.import_module(pkg)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=loggers or False, callbacks=[cb],
                         enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                         default_root_dir=tmp_path, log_every_n_steps=1)
    trainer.fit(_module_class(pl)(**hparams), _data())
    return trainer


@pytest.mark.parametrize("kind", LOGGERS)
@pytest.mark.parametrize("pkg", PACKAGES)
def test_every_metric_at_every_step(pkg, kind, tmp_path, server, sqlite):
    if kind == "tensorboard" and not HAS_TB:
        pytest.skip("tensorboard is not installed")
    loggers = _loggers(kind, pkg, tmp_path, server, sqlite)
    cb = EnergyCallback(interval=0.02)
    trainer = _fit(pkg, loggers, tmp_path, cb)
    assert trainer.global_step == STEPS
    published = {step for step, _, _ in cb.steps}
    assert published == set(range(1, STEPS + 1))
    assert all(set(STEP_METRICS) <= set(m) for _, _, m in cb.steps)
    mlflow_loggers = [lg for lg in loggers if type(lg).__name__ == "MLFlowLogger"]
    for lg in mlflow_loggers:
        client = MlflowClient(lg._tracking_uri)
        for key in STEP_METRICS:
            steps = sorted(m.step for m in client.get_metric_history(lg.run_id, key))
            assert steps == list(range(1, STEPS + 1)), key
        arts = {a.path for a in client.list_artifacts(lg.run_id, names.ARTIFACT_DIR)}
        assert ARTIFACTS <= arts
        assert client.get_run(lg.run_id).data.metrics[names.energy("fit")] > 0
    csv_loggers = [lg for lg in loggers if type(lg).__name__ == "CSVLogger"]
    for lg in csv_loggers:
        rows = list(csv.DictReader(open(Path(lg.log_dir) / "metrics.csv")))
        for key in STEP_METRICS:
            assert sorted(int(r["step"]) for r in rows if r.get(key)) == list(range(1, STEPS + 1)), key
    if not mlflow_loggers or csv_loggers or kind == "tensorboard":  # a logger without an artifact store
        first = loggers[0] if loggers else None  # the callback's rule: the first logger's folder, else the root
        root = Path(getattr(first, "log_dir", None) or getattr(first, "save_dir", None) or tmp_path)
        assert (root / names.ARTIFACT_DIR / names.summary_file("fit")).exists()


@pytest.mark.parametrize("pkg", PACKAGES)
def test_users_hyperparameters_named_like_ours_are_kept(pkg, tmp_path, sqlite):
    """A module whose hyperparameters use every param name green_mlops logs: fit completes, user values stay."""
    ours = ["total_params", "trainable_params", "macs", "flops", "model_size_bytes", "buffer_bytes",
            "carbon_intensity_g_per_kwh", "carbon_intensity_source", "pue"]
    hparams = {k: f"user-{k}" for k in ours}
    loggers = _loggers("mlflow-sqlite", pkg, tmp_path, None, sqlite)
    cb = EnergyCallback(interval=0.02)
    trainer = _fit(pkg, loggers, tmp_path, cb, **hparams)
    assert trainer.global_step == STEPS
    client = MlflowClient(loggers[0]._tracking_uri)
    run = client.get_run(loggers[0].run_id)
    for k in ours:
        assert run.data.params[k] == f"user-{k}"
    assert int(run.data.params[names.param("trainable_params")]) == 8 * 2 + 2
    assert run.data.metrics[names.metric(names.ENERGY_PER_SAMPLE_TRAIN)] > 0
