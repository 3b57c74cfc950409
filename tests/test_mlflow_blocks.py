"""Blocks of steps (``MetricWriter.log_block``): what the step stream ships, packed, reaches MLflow whole.

Against a real MLflow SQLite store; the delivery process is killed mid-run once, as in the writer's tests.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from green_mlops.meter import EnergyMeter, Settings
from green_mlops.meter.nvml import discover_nvml
from green_mlops.mlflow import MetricWriter
from green_mlops.mlflow.wire import Block
from green_mlops.run.stream import EnergyStream, StepBlock, metric_names
from tests.fake_nvml import FakeGpu, install

T0 = 1_700_000_000_000
KEYS = ["power/gpu0_W", "power/cpu_W", "power/total_W", "energy/gpu_J", "energy/cpu_J", "energy/total_J"]


def new_run(uri: str) -> str:
    client = MlflowClient(uri)
    return client.create_run(client.create_experiment(f"blocks-{time.time_ns()}")).info.run_id


def history(uri: str, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def block(first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = np.arange(first, first + n)
    values = steps[:, None] * 10.0 + np.arange(len(KEYS))[None, :] + 0.125
    return steps, T0 + steps, values


@pytest.fixture
def sqlite_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_block_packs_and_unpacks_without_numpy_on_the_far_side():
    steps, stamps, values = block(5, 3)
    b = Block.pack(KEYS, steps, stamps, values)
    assert len(b) == 3 * len(KEYS)
    again = Block(*b.packed())  # what the delivery process rebuilds from plain types
    assert again.records()[:7] == [(k, 50.0 + i + 0.125, T0 + 5, 5) for i, k in enumerate(KEYS)] + [
        (KEYS[0], 60.125, T0 + 6, 6)]
    assert Block.pack(KEYS, steps, stamps, np.where(values > 60, np.nan, values)) is None  # not finite: not a block
    with pytest.raises(ValueError, match="steps × keys"):
        Block.pack(KEYS[:2], steps, stamps, values)


@pytest.mark.timeout(120)
def test_blocks_and_single_metrics_arrive_whole_and_a_non_finite_value_is_skipped(sqlite_uri):
    run_id = new_run(sqlite_uri)
    w = MetricWriter(run_id, sqlite_uri, flush_interval=0.2)
    first = 0
    for n in (1, 250, 1000, 37, 400):  # blocks smaller and larger than MLflow's 1000 metrics a call
        w.log_block(KEYS, *block(first, n))
        first += n
    w.log_many({"other": 1.0}, first, T0)
    steps, stamps, values = block(first, 3)
    values[1, 2] = np.inf  # one value MLflow cannot take: that block goes one step at a time
    w.log_block(KEYS, steps, stamps, values)
    w.log_block(KEYS, [1, 2], [T0], [[1.0]])  # a malformed block is skipped, never raised into training
    assert w.flush(60) is True
    w.close()
    total = first + 3
    for i, key in enumerate(KEYS):
        got = history(sqlite_uri, run_id, key)
        want = [(s, T0 + s, s * 10.0 + i + 0.125) for s in range(total) if not (s == first + 1 and i == 2)]
        assert got == want, key
    assert (w.delivered, w.skipped, w.spooled, w.lost) == (total * len(KEYS) - 1 + 1, 2, 0, 0)


@pytest.mark.timeout(120)
def test_blocks_in_flight_when_the_delivery_process_dies_are_spooled_and_delivered(sqlite_uri):
    run_id = new_run(sqlite_uri)
    w = MetricWriter(run_id, sqlite_uri, flush_interval=0.1)
    for first in range(0, 300, 30):
        w.log_block(KEYS, *block(first, 30))
    os.kill(w._proc.pid, signal.SIGKILL)  # unacknowledged blocks are spooled here, the process restarted
    for first in range(300, 600, 30):
        w.log_block(KEYS, *block(first, 30))
        time.sleep(0.02)
    assert w.flush(60) is True
    w.close()
    w.log_block(KEYS, *block(600, 2))  # after close: straight to the spool, for `green-mlops sync`
    assert w.spool.count() == 2 * len(KEYS)
    for key in KEYS:
        assert [s for s, _, _ in history(sqlite_uri, run_id, key)] == list(range(600))


def test_the_stream_hands_sinks_a_block_whose_rows_are_its_arrays(monkeypatch):
    install(monkeypatch, [FakeGpu(power=lambda t: 100.0)])
    meter = EnergyMeter(0.05, sources=discover_nvml(Settings(), env={}).sources).start()
    got: list = []
    stream = EnergyStream(meter, got.append, origin=meter.start_time)
    for step in (1, 2, 3):
        time.sleep(0.05)
        stream.mark(step)
    meter.stop()
    stream.close()
    (b,) = got
    assert isinstance(b, StepBlock) and b.keys == metric_names(meter)
    assert b.steps.tolist() == [1, 2, 3] and b.values.shape == (3, len(b.keys))
    assert list(b) == [(s, ts, dict(zip(b.keys, row))) for s, ts, row in
                       zip(b.steps.tolist(), b.times_ms.tolist(), b.values.tolist())]
    assert b[2][2]["power/gpu0_W"] == pytest.approx(100.0, rel=0.02)
