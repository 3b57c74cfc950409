"""The plain-loop API: ``with metered_training() as run`` and ``run.step()`` per optimiser step (CPU, real MLflow)."""
from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from green_mlops import metered_training, names

STEP_METRICS = [names.power("cpu"), names.POWER_TOTAL, names.energy("cpu"), names.ENERGY_TOTAL, names.ENERGY_NET]


def _loop(run, steps_per_epoch=5, epochs=2, fail_at=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run.describe_model(model, torch.zeros(1, 8))
    for _ in range(epochs):
        with run.epoch():
            for _ in range(steps_per_epoch):
                x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if fail_at is not None and run.global_step + 1 == fail_at:
                    raise RuntimeError("boom")
                run.step(samples=len(x))


def test_plain_loop_logs_the_lightning_metrics_at_the_same_steps(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'loop.db'}")
    mlflow.set_experiment("loop")
    with mlflow.start_run() as active:
        with metered_training(interval=0.02, idle_seconds=0.1) as run:
            _loop(run)
    client = MlflowClient()
    for key in STEP_METRICS:
        assert sorted(m.step for m in client.get_metric_history(active.info.run_id, key)) == list(range(1, 11)), key
    data = client.get_run(active.info.run_id).data
    assert data.metrics[names.energy("fit")] > 0 and len(client.get_metric_history(
        active.info.run_id, names.epoch_energy("train"))) == 2
    assert data.metrics[names.metric(names.ENERGY_PER_SAMPLE_TRAIN)] > 0
    assert int(data.params[names.param("trainable_params")]) == 18
    arts = {a.path for a in client.list_artifacts(active.info.run_id, names.ARTIFACT_DIR)}
    assert f"{names.ARTIFACT_DIR}/{names.summary_file('fit')}" in arts


def test_a_failing_loop_keeps_its_energy_and_raises(tmp_path):
    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        with metered_training(interval=0.02, log_metrics=lambda m, s: seen.append(s),
                              output_dir=tmp_path / "energy") as run:
            _loop(run, fail_at=4)
    assert run.summary["status"] == "failed" and run.summary["energy_J"] > 0
    assert sorted(set(seen)) == [1, 2, 3]
    assert (tmp_path / "energy" / names.summary_file("fit")).exists()
