"""StepLog: a run's steps kept as array chunks, read back as the (step, ms, metrics) tuples they were."""
import numpy as np
import pytest

from green_mlops import names
from green_mlops.run.plots import plot_step_energy
from green_mlops.run.steplog import StepLog, step_columns
from green_mlops.run.stream import StepBlock

KEYS = [names.power("gpu0"), names.POWER_TOTAL, names.energy("gpu"), names.ENERGY_TOTAL]


def block(first: int, n: int, keys=KEYS) -> StepBlock:
    steps = np.arange(first, first + n, dtype=np.int64)
    times = 1_764_000_000_000 + steps * 7  # epoch milliseconds: exact in float64
    values = np.column_stack([steps * (k + 1) + 0.125 for k in range(len(keys))])
    return StepBlock(list(keys), steps, times, values)


def test_blocks_across_chunk_edges_read_back_exactly():
    log, expected = StepLog(chunk_rows=4), []
    for first, n in ((0, 3), (3, 1), (4, 9), (13, 0), (13, 2)):
        b = block(first, n)
        log.extend(b)
        expected += list(b)
    assert len(log) == 15 and list(log) == expected
    assert log[0] == expected[0] and log[-1] == expected[-1] and log[5] == expected[5]
    assert log[2:6] == expected[2:6]
    assert isinstance(log[-1][0], int) and log[-1][1] == 1_764_000_000_000 + 14 * 7
    with pytest.raises(IndexError):
        log[15]
    steps, cols = log.columns()
    assert steps.tolist() == list(range(15)) and set(cols) == set(KEYS)
    assert cols[names.ENERGY_TOTAL].tolist() == [m[names.ENERGY_TOTAL] for _, _, m in expected]


def test_tuples_and_a_change_of_metrics_midway():
    log = StepLog(chunk_rows=2)
    log.extend([(1, 10, {"a": 1.0}), (2, 20, {"a": 2.0})])
    log.extend(block(3, 3, keys=["a", "b"]))
    assert log[1] == (2, 20, {"a": 2.0}) and set(log[2][2]) == {"a", "b"}
    steps, cols = log.columns()
    assert steps.tolist() == [1, 2, 3, 4, 5]
    assert np.isnan(cols["b"][:2]).all() and cols["b"][2:].tolist() == [6.125, 8.125, 10.125]
    assert step_columns(list(log))[1]["a"].tolist() == cols["a"].tolist()


def test_a_block_builds_no_dict_until_read():
    b = block(0, 3)
    assert len(b) == 3 and b[1] == (1, 1_764_000_000_007, dict(zip(KEYS, [1.125, 2.125, 3.125, 4.125])))
    assert list(b)[2] == b[2] and b[-1] == b[2] and b[0:2] == list(b)[:2]


def test_a_log_is_plotted_like_the_tuples(tmp_path):
    log = StepLog()
    log.extend(block(0, 5000))
    assert len(log) == 5000 and log.columns()[1][names.POWER_TOTAL].shape == (5000,)
    path = plot_step_energy(log, tmp_path / "fit_energy.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
