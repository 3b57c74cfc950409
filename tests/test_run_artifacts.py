"""A metered run's files: the step plot thinned for long runs, written on a thread of its own, errors handed back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from green_mlops import EnergyMeter, discover, names
from green_mlops.run.artifacts import start_run_artifacts
from green_mlops.run.plots import plot_step_energy, thin


def test_thin_keeps_short_lines_whole():
    x, y = np.arange(50.0), np.random.default_rng(0).normal(size=50)
    tx, ty = thin(x, y, most=100)
    assert tx is x and ty is y


def test_thin_keeps_every_peak_and_dip_the_ends_and_the_order():
    n = 100_001
    x = np.arange(n, dtype=float)
    y = np.sin(x / 300)
    y[31_337], y[77_777] = 50.0, -50.0  # one step each: a spike and a dip
    y[500:900] = np.nan  # a gap (a source that could not be read)
    tx, ty = thin(x, y, most=2000)
    assert len(tx) <= 2002 and np.all(np.diff(tx) > 0)
    assert (tx[0], tx[-1]) == (0.0, n - 1.0)
    assert {31_337.0, 77_777.0} <= set(tx.tolist())
    assert np.nanmax(ty) == 50.0 and np.nanmin(ty) == -50.0
    assert np.array_equal(ty, y[tx.astype(int)], equal_nan=True)  # points of the line itself, none made up


def test_a_long_run_is_plotted_from_its_thinned_lines(tmp_path):
    keys = [names.power("cpu"), names.POWER_TOTAL, names.energy("cpu"), names.ENERGY_TOTAL]
    steps = [(i, 0, {k: float(i % 97) for k in keys}) for i in range(1, 20_001)]
    path = plot_step_energy(steps, tmp_path / "fit_energy.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _stopped_meter() -> EnergyMeter:
    meter = EnergyMeter(0.01, sources=discover(gpu=False).sources, name="fit")
    meter.start()
    meter.stop()
    return meter


def test_artifacts_are_written_on_their_own_thread(tmp_path):
    meter = _stopped_meter()
    steps = [(i, 0, {names.POWER_TOTAL: 10.0, names.ENERGY_TOTAL: float(i)}) for i in range(1, 30)]
    files = start_run_artifacts(meter, steps, {"stage": "fit", "energy_J": 1.5}, "fit").result(timeout=120)
    assert [f.name for f in files] == [names.trace_file("fit"), names.plot_file("fit"), names.summary_file("fit")]
    assert json.loads(files[2].read_text())["energy_J"] == 1.5


def test_a_failure_on_the_artifact_thread_reaches_the_caller():
    meter = _stopped_meter()
    steps = [(1, 0, {names.POWER_TOTAL: "not a number"})]  # the plot cannot be drawn
    with pytest.raises(ValueError, match="not a number"):
        start_run_artifacts(meter, steps, {"stage": "fit"}, "fit").result(timeout=120)
