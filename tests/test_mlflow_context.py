"""Hardware and provenance tags on MLflow runs through the run-context-provider entry point.

MLflow, its SQLite tracking store and Lightning are real; only NVML and the powercap tree are faked.
"""
from __future__ import annotations

import logging
import subprocess
import sys
from importlib.metadata import entry_points

import mlflow
import pynvml
import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import _run_context_provider_registry
from pytorch_lightning.loggers import MLFlowLogger

import green_mlops.meter as meter
from green_mlops.mlflow import context
from green_mlops.mlflow.context import GreenMlopsRunContext, hardware_tags
from tests.fake_nvml import FakeGpu, install
from tests.lightning_digits import DigitsMLP, digits_loaders
from tests.test_rapl import zone

HW_KEYS = ("cpu_model", "cpu_count", "ram_gb", "virtual_machine", "gpu_count")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _fresh(tracking_uri):
    """Each test discovers afresh and logs to the SQLite store; MLflow's globals are put back after."""
    context._clear_cache()
    mlflow.set_tracking_uri(tracking_uri)
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    context._clear_cache()


def green_tags(run_id: str) -> dict[str, str]:
    tags = MlflowClient().get_run(run_id).data.tags
    return {k: v for k, v in tags.items() if k.startswith("green_mlops.")}


def test_entry_point_registers_the_provider_once():
    (ep,) = [e for e in entry_points(group="mlflow.run_context_provider") if e.name == "green_mlops"]
    assert ep.value == "green_mlops.mlflow.context:GreenMlopsRunContext"
    assert sum(isinstance(p, GreenMlopsRunContext) for p in _run_context_provider_registry) == 1


def test_importing_the_provider_before_mlflow_still_registers_it_without_warning():
    """MLflow loads entry points while it imports; when our module triggers that import, it is half-built."""
    code = ("import green_mlops.mlflow.context as c\n"
            "from mlflow.tracking.context.registry import _run_context_provider_registry as r\n"
            "print(sum(isinstance(p, c.GreenMlopsRunContext) for p in r))\n")
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert "Failure attempting to register" not in out.stderr


def test_plain_start_run_gets_hardware_method_and_provenance_tags():
    mlflow.set_experiment("plain")
    with mlflow.start_run() as run:
        pass
    tags = green_tags(run.info.run_id)
    assert tags == hardware_tags()
    for key in HW_KEYS:
        assert tags[f"green_mlops.hw.{key}"], key
    for domain in ("gpu", "cpu", "dram"):
        assert tags[f"green_mlops.method.{domain}"]
        assert tags[f"green_mlops.provenance.{domain}"] in {"measured", "estimated", "none"}
    if tags["green_mlops.hw.gpu_count"] == "0":
        assert tags["green_mlops.method.gpu"] == tags["green_mlops.provenance.gpu"] == "none"


def test_methods_of_every_source_joined_and_nvml_left_shut_down(tmp_path, monkeypatch):
    """Two GPUs with different methods, RAPL for the CPU only: DRAM falls back to an estimate."""
    install(monkeypatch, [FakeGpu(uuid="GPU-aaaa"), FakeGpu(uuid="GPU-bbbb", counter=False)])
    balance = {"init": 0, "shutdown": 0}
    fake_init = pynvml.nvmlInit

    def init():
        fake_init()
        balance["init"] += 1

    monkeypatch.setattr(pynvml, "nvmlInit", init)
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: balance.__setitem__("shutdown", balance["shutdown"] + 1))
    root = tmp_path / "powercap"
    root.mkdir()
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    monkeypatch.setenv("GREEN_MLOPS_POWERCAP_ROOT", str(root))

    mlflow.set_experiment("fake-hardware")
    with mlflow.start_run() as run:
        pass
    tags = green_tags(run.info.run_id)
    assert tags["green_mlops.hw.gpu_count"] == "2"
    assert tags["green_mlops.hw.gpu_names"] == "NVIDIA H100 80GB HBM3"
    assert tags["green_mlops.hw.gpu_driver"] == "580.159.04"
    assert tags["green_mlops.method.gpu"] == "nvml-energy-counter,nvml-power-samples"
    assert tags["green_mlops.provenance.gpu"] == "measured"
    assert tags["green_mlops.method.cpu"] == "rapl"
    assert tags["green_mlops.provenance.cpu"] == "measured"
    assert tags["green_mlops.method.dram"] not in {"rapl", "none"}
    assert tags["green_mlops.provenance.dram"] == "estimated"
    assert balance["init"] >= 1 and balance["shutdown"] == balance["init"]


def test_discovery_runs_once_per_process(monkeypatch):
    calls = []
    real = meter.discover
    monkeypatch.setattr(meter, "discover", lambda *a, **k: calls.append(1) or real(*a, **k))
    mlflow.set_experiment("cached")
    for _ in range(3):
        with mlflow.start_run():
            pass
    assert len(calls) == 1


def test_failing_discovery_keeps_the_hardware_tags_and_the_run(monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("powercap exploded")

    monkeypatch.setattr(meter, "discover", boom)
    mlflow.set_experiment("failing")
    with caplog.at_level(logging.WARNING, logger="green_mlops.mlflow.context"):
        with mlflow.start_run() as run:
            mlflow.log_metric("x", 1.0)
    tags = green_tags(run.info.run_id)
    assert "green_mlops.hw.cpu_model" in tags
    assert not any(k.startswith(("green_mlops.method.", "green_mlops.provenance.")) for k in tags)
    assert "powercap exploded" in caplog.text
    assert MlflowClient().get_run(run.info.run_id).data.metrics == {"x": 1.0}


def test_failing_machine_facts_keep_the_method_tags(monkeypatch, caplog):
    monkeypatch.setattr(meter, "machine_facts", lambda *a: 1 / 0)
    mlflow.set_experiment("failing")
    with caplog.at_level(logging.WARNING, logger="green_mlops.mlflow.context"):
        with mlflow.start_run() as run:
            pass
    tags = green_tags(run.info.run_id)
    assert not any(k.startswith("green_mlops.hw.") for k in tags)
    assert tags["green_mlops.method.cpu"] != "none"
    assert "ZeroDivisionError" in caplog.text


def test_provider_that_raises_internally_does_not_break_start_run(monkeypatch, caplog):
    def broken():
        raise MemoryError("out of memory while probing")

    monkeypatch.setattr(context, "_compute", broken)
    assert GreenMlopsRunContext().tags() == {}  # our own guard, not only MLflow's around providers
    mlflow.set_experiment("failing")
    with mlflow.start_run() as run:
        mlflow.log_param("p", 1)
    assert green_tags(run.info.run_id) == {}
    assert MlflowClient().get_run(run.info.run_id).info.status == "FINISHED"
    assert "out of memory while probing" in caplog.text


def test_lightning_mlflow_logger_runs_get_the_tags(tracking_uri):
    """pytorch_lightning's MLFlowLogger creates its run with MlflowClient.create_run(tags=resolve_tags(tags)):
    the context providers run, so no tags need passing. A bare MlflowClient().create_run() gets none."""
    assert pl.Trainer.__module__.startswith("pytorch_lightning")
    logger = MLFlowLogger(experiment_name="lightning", tracking_uri=tracking_uri, tags={"mine": "kept"})
    train, val = digits_loaders()
    pl.Trainer(max_epochs=1, accelerator="cpu", logger=logger, limit_train_batches=4, limit_val_batches=1, log_every_n_steps=1,
               enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
               ).fit(DigitsMLP(), train, val)
    run = MlflowClient().get_run(logger.run_id)
    assert run.data.tags["mine"] == "kept"
    assert "train_loss" in run.data.metrics
    tags = green_tags(logger.run_id)
    assert tags == hardware_tags()
    assert all(f"green_mlops.hw.{k}" in tags for k in HW_KEYS)

    bare = MlflowClient().create_run(run.info.experiment_id)
    assert green_tags(bare.info.run_id) == {}

