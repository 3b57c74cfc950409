"""EnergyCallback in real Lightning training on the CPU, logging to a real MLflow SQLite store."""
from __future__ import annotations

import csv
import importlib.util
import math
import time

import pytest
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import CSVLogger, MLFlowLogger

from green_mlops.lightning import EnergyCallback
from green_mlops.run.stream import metric_names
from tests.lightning_digits import DigitsMLP, digits_loaders

LIGHTNING_PACKAGES = [p for p in ("lightning.pytorch", "pytorch_lightning") if importlib.util.find_spec(p.split(".")[0])]
STEP_METRICS = ["power/cpu_W", "power/dram_W", "power/total_W", "energy/cpu_J", "energy/dram_J",
                "energy/total_J", "energy/net_J"]


def trainer(tmp_path, logger, callback, epochs=2):
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
                      enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                      default_root_dir=tmp_path, log_every_n_steps=5)


@pytest.fixture()
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_fit_and_test_log_every_promised_metric(tmp_path, store, capfd):
    logger = MLFlowLogger(experiment_name="digits", tracking_uri=store, artifact_location=str(tmp_path / "art"))
    cb = EnergyCallback(interval=0.05, idle_seconds=0.3)
    train, val = digits_loaders()
    t = trainer(tmp_path, logger, cb)
    t.fit(DigitsMLP(), train, val)
    t.test(t.lightning_module, val)
    test_summary = dict(cb.summary["metrics"])
    t.predict(t.lightning_module, val)
    assert cb.summary["metrics"]["energy/predict_J"] > 0
    assert cb.summary["metrics"]["green_mlops/energy_per_sample_inference_J"] > 0
    client = MlflowClient(store)
    run = client.get_run(logger.run_id)
    steps = t.global_step
    assert steps == 2 * math.ceil(1400 / 64)
    for key in STEP_METRICS:
        hist = client.get_metric_history(logger.run_id, key)
        assert sorted(m.step for m in hist) == list(range(1, steps + 1)), key
        if key.startswith("energy/") and key != "energy/net_J":
            values = [m.value for m in sorted(hist, key=lambda m: m.step)]
            assert all(b >= a for a, b in zip(values, values[1:])), f"{key} decreases"
    m = run.data.metrics
    epochs = [h.value for h in client.get_metric_history(logger.run_id, "energy/train_epoch_J")]
    vals = [h.value for h in client.get_metric_history(logger.run_id, "energy/val_epoch_J")]
    assert len(epochs) == 2 and len(vals) == 2
    # validation runs inside Lightning's training epoch: its energy is counted under val only, so training and
    # validation epochs are disjoint parts of fit (which also holds set-up and the time between loops)
    assert 0 < sum(epochs) + sum(vals) <= m["energy/fit_J"] * 1.0001
    assert all(e > 0 for e in epochs + vals)
    for key in ("green_mlops/energy_per_sample_train_J", "green_mlops/energy_per_sample_inference_J", "co2e/fit_g", "time/fit_s",
                "energy/test_J"):
        assert key in m and m[key] > 0, key
    assert m["green_mlops/energy_per_sample_train_J"] == pytest.approx(sum(epochs) / (2 * 1400), rel=1e-6)
    assert test_summary["green_mlops/energy_per_sample_inference_J"] == pytest.approx(m["energy/test_epoch_J"] / 397, rel=1e-6)
    assert m["energy/predict_J"] > 0
    params = run.data.params
    assert int(params["green_mlops.trainable_params"]) == 64 * 128 + 128 + 128 * 10 + 10
    assert int(params["green_mlops.macs"]) > 0 and params["green_mlops.carbon_intensity_source"]
    tags = run.data.tags
    assert tags.get("green_mlops.method.cpu") and any(k.startswith("green_mlops.hw.") for k in tags)
    arts = {a.path for a in client.list_artifacts(logger.run_id, "green_mlops")}
    assert {"green_mlops/fit_trace.parquet", "green_mlops/fit_energy.png", "green_mlops/fit_summary.json"} <= arts
    assert run.info.status == "FINISHED"
    assert set(metric_names(cb.meter)) >= set(STEP_METRICS)
    if any(s.info.domain == "dram" and s.info.provenance == "estimated" for s in cb.meter.sources):
        dram = {h.value for h in client.get_metric_history(logger.run_id, "power/dram_W")}
        assert len(dram) == 1  # a constant model estimate is logged as a constant, without float noise
    lines = [x for x in capfd.readouterr().err.splitlines() if x.startswith("green_mlops: ")]
    assert [x.split(":")[1].strip() for x in lines] == ["fit success", "test success", "predict success"]
    assert "Wh gross, " in lines[0] and "Wh net of idle" in lines[0] and "estimated (" in lines[0]
    assert f"MLflow run {logger.run_id} at {store}" in lines[0]


def test_failing_step_keeps_partial_energy_and_marks_failed(tmp_path, store):
    logger = MLFlowLogger(experiment_name="digits", tracking_uri=store, artifact_location=str(tmp_path / "art"))
    cb = EnergyCallback(interval=0.05)
    train, val = digits_loaders()
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, logger, cb).fit(DigitsMLP(fail_at_step=10), train, val)
    client = MlflowClient(store)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FAILED"
    hist = client.get_metric_history(logger.run_id, "energy/total_J")
    assert sorted(h.step for h in hist) == list(range(1, 11))
    assert run.data.metrics["energy/fit_J"] > 0
    arts = {a.path for a in client.list_artifacts(logger.run_id, "green_mlops")}
    assert "green_mlops/fit_summary.json" in arts


def test_any_logger_gets_the_metrics(tmp_path, capfd):
    logger = CSVLogger(tmp_path, name="csv")
    cb = EnergyCallback(interval=0.05, log_every_n_steps=4)
    train, val = digits_loaders()
    trainer(tmp_path, logger, cb, epochs=1).fit(DigitsMLP(), train, val)
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    steps = sorted({int(r["step"]) for r in rows if r.get("energy/total_J")})
    assert steps == list(range(4, 23, 4))
    assert (tmp_path / "csv" / "version_0" / "green_mlops" / "fit_energy.png").exists()
    line = [x for x in capfd.readouterr().err.splitlines() if x.startswith("green_mlops: fit success: ")]
    assert len(line) == 1 and " Wh" in line[0] and f"{tmp_path / 'csv' / 'version_0' / 'green_mlops'}/" in line[0]


@pytest.mark.parametrize("kwargs, match", [
    ({"interval": 0}, "interval"), ({"idle_seconds": -1}, "idle_seconds"),
    ({"log_every_n_steps": 0}, "log_every_n_steps"), ({"pue": 0.5}, "PUE|pue"),
    ({"country": "XX-nowhere"}, "country|Country"),
])
def test_bad_input_is_refused_before_training(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EnergyCallback(**kwargs)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("package", LIGHTNING_PACKAGES)
def test_ddp_counts_host_energy_once_and_samples_of_every_rank(tmp_path, package):
    """DDP, two CPU processes (gloo): CPU and DRAM are metered once per host, totals reduced to rank 0, and
    energy per sample divides each loop's all-ranks energy by the samples of all ranks (not rank 0's)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, str(root / "tests" / "ddp_script.py"), str(out), package], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=540)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["world_size"] == 2
    assert sorted(data["callback_local_sources"]) == ["cpu", "dram"]
    # the host's constant DRAM model shows double counting plainly: it must match one meter, not two
    assert data["callback_dram_J"] == pytest.approx(data["independent_dram_J"], rel=0.02)
    assert data["callback_total_J"] == pytest.approx(data["independent_total_J"], rel=0.10)
    # samples the ranks really ran on: fit 2 epochs × 1400 (700 a rank); test 397 held out, padded to 2 × 199 by
    # the DistributedSampler; predict 397 (Lightning's predict sampler repeats none)
    assert data["train_per_sample_J"] == pytest.approx(data["train_epoch_J"] / (2 * 1400), rel=1e-9)
    assert data["test_per_sample_J"] == pytest.approx(data["test_J"] / 398, rel=1e-9)
    assert data["predict_per_sample_J"] == pytest.approx(data["predict_J"] / 397, rel=1e-9)


class _ServerOutage(pl.Callback):
    """Stops the tracking server at one training step and brings it back at a later one."""

    def __init__(self, server, down_at: int, up_at: int) -> None:
        self.server, self.down_at, self.up_at = server, down_at, up_at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.down_at:
            self.server.stop()
            time.sleep(2.5)  # the writer tries at least twice while the server is gone
        elif trainer.global_step == self.up_at:
            self.server.start()


@pytest.mark.timeout(600)
def test_tracking_server_down_mid_training_loses_no_metric(tmp_path):
    """A real server stopped at step 3 and restarted at step 18 (inside the first epoch, so that
    Lightning's own logger, which has no spool, is not asked to log while it is down)."""
    from tests.mlflow_server import MlflowServer

    class SlowMLP(DigitsMLP):
        def training_step(self, batch, batch_idx):
            time.sleep(0.05)  # long enough for the writer to try, and fail, while the server is down
            return super().training_step(batch, batch_idx)

    with MlflowServer(tmp_path / "srv") as server:
        logger = MLFlowLogger(experiment_name="outage", tracking_uri=server.uri)
        train, val = digits_loaders()
        cb = EnergyCallback(interval=0.05)
        t = pl.Trainer(max_epochs=2, accelerator="cpu", logger=logger, callbacks=[cb, _ServerOutage(server, 3, 18)],
                       enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
        t.fit(SlowMLP(), train, val)
        client = MlflowClient(server.uri)
        steps = sorted(m.step for m in client.get_metric_history(logger.run_id, "energy/total_J"))
        assert steps == list(range(1, t.global_step + 1))
        assert "energy/fit_J" in client.get_run(logger.run_id).data.metrics


def test_net_energy_per_device_over_the_stage_window(tmp_path, store, monkeypatch):
    """Eq. 1–2: net = gross − idle W × the stage's own duration, per device and in total, for fit and predict."""
    from tests.fake_nvml import FakeGpu, install

    busy = []  # the fake GPU idles at 80 W through the baseline (measured in setup), then draws 230 W

    class Busy(pl.Callback):
        def setup(self, trainer, pl_module, stage):
            busy.append(time.monotonic()) if not busy else None

        # each stage lasts over a second: the fake counter moves every 100 ms, so a stage of a tenth of a
        # second (digits train that fast once nothing else loads the CPU) could not show its mean power to 10 %
        def on_train_batch_end(self, *args):
            time.sleep(0.05)

        def on_predict_batch_end(self, *args):
            time.sleep(0.6)

    install(monkeypatch, [FakeGpu(power=lambda t: 230.0 if busy and t >= busy[0] else 80.0)])
    logger = MLFlowLogger(experiment_name="digits", tracking_uri=store, artifact_location=str(tmp_path / "art"))
    cb = EnergyCallback(interval=0.05, idle_seconds=0.4)
    train, val = digits_loaders()
    t = trainer(tmp_path, logger, cb, epochs=1)
    t.callbacks.append(Busy())
    t.fit(DigitsMLP(), train, val)
    t.predict(t.lightning_module, val)
    m = MlflowClient(store).get_run(logger.run_id).data.metrics
    for stage in ("fit", "predict"):
        seconds = m[f"time/{stage}_s"]
        domains = [d for d in ("gpu", "cpu", "dram") if f"energy/{stage}_{d}_J" in m]
        assert "gpu" in domains and "cpu" in domains
        assert sum(m[f"energy/{stage}_{d}_J"] for d in domains) == pytest.approx(m[f"energy/{stage}_J"], rel=1e-9)
        for d in domains:
            expected = m[f"energy/{stage}_{d}_J"] - m[f"power/idle_{d}_W"] * seconds
            assert m[f"energy/{stage}_{d}_net_J"] == pytest.approx(expected, rel=1e-6, abs=1e-6), (stage, d)
        assert m["power/idle_total_W"] == pytest.approx(sum(m[f"power/idle_{d}_W"] for d in domains), rel=1e-9)
        assert m[f"energy/{stage}_net_J"] == pytest.approx(
            m[f"energy/{stage}_J"] - m["power/idle_total_W"] * seconds, rel=1e-6, abs=1e-6)
        # the GPU's device energy covers the whole stage: its mean power is the 230 W it drew, its net 150 W × s
        assert m[f"energy/{stage}_gpu_J"] / seconds == pytest.approx(230.0, rel=0.1), stage
        assert m[f"energy/{stage}_gpu_net_J"] / seconds == pytest.approx(150.0, rel=0.2)
    assert 70 < m["power/idle_gpu_W"] < 115  # 80 W, read through a counter that moves every 100 ms, over 0.4 s


def test_without_idle_baseline_only_gross_per_device_is_logged(tmp_path, store):
    logger = MLFlowLogger(experiment_name="digits", tracking_uri=store, artifact_location=str(tmp_path / "art"))
    train, val = digits_loaders()
    trainer(tmp_path, logger, EnergyCallback(interval=0.05), epochs=1).fit(DigitsMLP(), train, val)
    m = MlflowClient(store).get_run(logger.run_id).data.metrics
    assert m["energy/fit_cpu_J"] > 0
    assert not [k for k in m if k.endswith("_net_J") and k.startswith("energy/fit") or k.startswith("power/idle")]
