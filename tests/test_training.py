"""Training module: real Lightning on the CPU on digits, a real MLflow SQLite store, errors before training."""
from __future__ import annotations

import argparse
import math

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger

from green_mlops.commands.train import add_arguments, main, run
from green_mlops.training.data import load_data
from green_mlops.training.train import (
    ImageClassifier,
    TrainConfig,
    train_and_measure,
)

LENET_PARAMS = 62_006  # LeNet-5 for 3×32×32 inputs, 10 classes (kuangliu/pytorch-cifar models/lenet.py)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def tiny_cnn(num_classes: int) -> torch.nn.Module:
    """A user factory: the callable form of an architecture spec."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 8 * 8, num_classes))


class StopAt(pl.Callback):
    """Ends fit early, as an energy budget or early stopping would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


class Recorder(pl.Callback):
    """Notes every stage Lightning sets up."""

    def __init__(self) -> None:
        self.stages: list[str] = []

    def setup(self, trainer, pl_module, stage):
        self.stages.append(str(getattr(stage, "value", stage)))


def test_nested_mlflow_run_gets_energy_metrics_and_a_consistent_outcome(tmp_path, digits):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("train", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp).info.run_id
    child = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
    client.log_param(child, "lr", "1e-3")  # the sweep's own spelling is kept, not overwritten
    logger = MLFlowLogger(tracking_uri=uri, run_id=child)
    config = TrainConfig(arch="lenet", batch_size=64, max_steps=4, interval=0.05)

    out = train_and_measure(config, logger=logger, data=digits)

    assert out.run_id == child and out.status == "completed" and out.dataset == "digits"
    assert out.steps == 4 and out.samples_seen == 4 * 64
    assert 0.0 <= out.val_accuracy <= 1.0
    assert out.train_energy_J > 0 and out.train_time_s > 0 and out.train_energy_per_sample_J > 0
    assert out.inference_samples == 360 and out.inference_energy_J > 0
    assert 0 < out.inference_energy_per_sample_J * 360 <= out.inference_energy_J * 1.0001
    assert set(out.methods) == {"cpu", "dram"} and all(":" in m for m in out.methods.values())
    assert out.model["total_params"] == LENET_PARAMS and out.model["macs"] > 0  # example_input_array at work
    assert set(out.summaries) == {"fit", "validate", "inference"}  # max_steps ended mid-epoch: validated after
    assert math.isclose(out.train_energy_Wh * 3600, out.train_energy_J)

    run_ = client.get_run(child)
    m, p = run_.data.metrics, run_.data.params
    assert math.isclose(m["energy/fit_J"], out.train_energy_J, rel_tol=1e-9)
    assert math.isclose(m["green_mlops/energy_per_sample_inference_J"], out.inference_energy_per_sample_J, rel_tol=1e-9)
    assert m["green_mlops/energy_per_sample_train_J"] > 0 and "val_acc" in m and "train_loss" in m
    steps = sorted(h.step for h in client.get_metric_history(child, "energy/total_J"))
    assert steps == [1, 2, 3, 4]
    assert p["lr"] == "1e-3" and p["arch"] == "lenet" and p["batch_size"] == "64" and p["dataset"] == "digits"
    assert p["data_provenance"] == "real" and p["inference_samples"] == "360"
    assert "train_loss_step" not in m  # epoch-level logging only


def test_stopped_early_skips_inference_unless_asked(tmp_path, digits):
    config = TrainConfig(arch=tiny_cnn, batch_size=32, momentum=0.9, interval=0.05, output_dir=str(tmp_path))
    out = train_and_measure(config, extra_callbacks=[StopAt(2)], data=digits)
    assert out.status == "stopped" and out.steps == 2 and out.run_id is None
    assert out.val_accuracy is not None  # Lightning validates when a callback stops fit
    assert out.inference_energy_per_sample_J is None and out.inference_samples == 0
    assert out.arch == "tiny_cnn" and out.model["total_params"] == sum(p.numel() for p in tiny_cnn(10).parameters())

    stages = Recorder()
    forced = train_and_measure(config, extra_callbacks=[StopAt(1), stages], data=digits, inference=True, logger=False)
    assert stages.stages == ["fit", "predict"]
    assert forced.status == "stopped" and forced.inference_samples == 360
    assert forced.inference_energy_per_sample_J > 0
    assert any((tmp_path / "green_mlops_energy").iterdir())  # no MLflow: trace and summary on disk


def test_image_classifier_has_the_papers_defaults():
    module = ImageClassifier(tiny_cnn(10))
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["momentum"]) == (0.001, 5e-4, 0.0)
    assert module.example_input_array.shape == (1, 3, 32, 32)
    c = TrainConfig(arch="lenet")
    assert (c.batch_size, c.lr, c.weight_decay, c.epochs, c.dataset, c.seed) == (128, 0.001, 5e-4, 1, "digits", 0)


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "batch size must be a whole number ≥ 1"),
    ({"epochs": 0}, "epochs must be"),
    ({"lr": -0.1}, "learning rate must be a positive number"),
    ({"lr": float("nan")}, "learning rate"),
    ({"max_steps": 0}, "max steps"),
    ({"arch": "resnet1800"}, "unknown model 'resnet1800'"),
    ({"arch": ""}, "--arch"),
    ({"arch": 42}, "a model spec is a name or a callable"),
    ({"dataset": "mnist"}, "choose one of digits, cifar10, synthetic"),
    ({"dataset": "cifar10"}, "--data-dir"),
    ({"interval": 0}, "interval"),
    ({"accelerator": "tpu9"}, "unknown accelerator"),
    ({"data_options": {"pool": 3}}, "unknown data option"),
])
def test_bad_config_is_refused_before_training(tmp_path, changes, message):
    config = TrainConfig(**{"arch": "lenet", "output_dir": str(tmp_path / "out"), **changes})
    started = Recorder()
    with pytest.raises(ValueError, match=message):
        train_and_measure(config, extra_callbacks=[started])
    assert started.stages == [] and not (tmp_path / "out").exists()


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_bad_number_exits_2_naming_the_fix(tmp_path, capsys):
    assert main(["--batch-size", "0", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert "argument --batch-size: must be a whole number ≥ 1; got 0" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("argv, message", [
    (["--arch", "nonet"], "unknown model 'nonet'"),
    (["--dataset", "cifar10"], "--data-dir"),
    (["--dataset", "digits", "--train-samples", "10"], "synthetic only"),
])
def test_cli_bad_input_exits_2_before_training(tmp_path, capsys, argv, message):
    code = run(cli_args(*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"))
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("green-mlops train: error:")
    assert not (tmp_path / "m.db").exists()


def test_cli_cifar10_missing_data_exits_2(tmp_path, capsys):
    code = run(cli_args("--dataset", "cifar10", "--data-dir", str(tmp_path / "none"), "--no-mlflow"))
    assert code == 2 and "--download" in capsys.readouterr().err


def test_cli_trains_logs_to_mlflow_and_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'cli.db'}"
    code = run(cli_args("--arch", "lenet", "--dataset", "synthetic", "--train-samples", "256",
                        "--inference-samples", "128", "--batch-size", "64", "--interval", "0.05",
                        "--tracking-uri", uri, "--experiment", "cli", "--run-name", "lenet-synthetic"))
    out = capsys.readouterr().out
    assert code == 0
    for text in ("validation accuracy", "training energy", "J/sample over 128 samples", "provenance",
                 "cpu: estimated:", "MLflow run", "(synthetic), completed", "4 steps, 256 samples"):
        assert text in out, text
    client = MlflowClient(uri)
    (r,) = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert r.info.run_name == "lenet-synthetic" and r.data.metrics["energy/fit_J"] > 0
    assert r.data.params["data.train_samples"] == "256"
    assert not (tmp_path / "green_mlops_energy").exists()  # with MLflow, artifacts go there only
