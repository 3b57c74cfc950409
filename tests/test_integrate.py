"""Integration of samples into energy: anchors exact, curve-shaped in between, nothing lost."""
import numpy as np
import pytest

from green_mlops.meter.integrate import fill_gaps, integrate


def test_anchor_increment_follows_power_curve():
    t = np.array([0, 0.1, 0.2, 0.3, 0.4, 0.5])
    p = np.array([100, 100, 300, 300, 100, 100.0])
    a = np.array([0, np.nan, np.nan, np.nan, np.nan, 100.0])
    c = integrate(t, p, a)
    # trapezoids: 10, 20, 30, 20, 10 = 90 J; the counter says 100 J, so each share scales by 10/9
    assert c.e == pytest.approx([0, 100 / 9, 300 / 9, 600 / 9, 800 / 9, 100])
    assert c.final_until == 0.5


def test_window_shorter_than_update_gets_its_share_not_zero():
    t = np.array([0.0, 0.1])
    c = integrate(t, np.array([0.0, 200.0]), np.array([0.0, 10.0]))
    first_half, second_half = np.diff(c.at([0.0, 0.05, 0.1]))
    assert first_half > 0 and second_half > 0
    # the power ramps from 0 to 200 W: the second half holds 3/4 of the energy
    assert second_half == pytest.approx(3 * first_half)
    assert first_half + second_half == pytest.approx(10.0)


def test_consecutive_windows_sum_to_whole():
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.05, 0.15, 200))
    p = rng.uniform(50, 700, 200)
    a = np.full(200, np.nan)
    a[::5] = np.cumsum(rng.uniform(5, 50, 40))
    c = integrate(t, p, a)
    edges = np.arange(t[0], t[-1], 0.05)
    parts = np.diff(c.at(np.append(edges, t[-1])))
    assert parts.sum() == pytest.approx(c.at(t[-1])[0] - c.at(t[0])[0], rel=1e-12)
    assert (parts >= 0).all()


def test_after_last_anchor_is_provisional_integral():
    t = np.array([0, 0.1, 0.2, 0.3])
    c = integrate(t, np.array([100, 100, 100, 100.0]), np.array([0, np.nan, 20.0, np.nan]))
    assert c.final_until == 0.2
    assert c.e[-1] == pytest.approx(30.0)


def test_power_only_source_integrates_trapezoids():
    t = np.array([0, 1, 2.0])
    c = integrate(t, np.array([0, 100, 100.0]), np.full(3, np.nan))
    assert c.e == pytest.approx([0, 50, 150])


def test_gaps_are_interpolated_and_counted():
    t = np.array([0, 1, 2, 3.0])
    p, gap = fill_gaps(t, np.array([100, np.nan, 300, 300.0]))
    assert p[1] == pytest.approx(200)
    assert gap == pytest.approx(2.0)
    c = integrate(t, np.array([100, np.nan, 300, 300.0]), np.full(4, np.nan))
    assert c.gap_between(0, 3) == pytest.approx(2.0)
    assert c.gap_between(2, 3) == 0.0


def test_zero_power_between_anchors_apportions_by_time():
    t = np.array([0, 0.25, 1.0])
    c = integrate(t, np.zeros(3), np.array([0, np.nan, 8.0]))
    assert c.e[1] == pytest.approx(2.0)


def test_fine_samples_shape_energy_between_sparse_ticks():
    from green_mlops.meter.integrate import merge_curve

    # ticks every 100 ms see nothing of a 50/50 square wave; 20 ms samples do
    t = np.array([0.0, 0.1, 0.2])
    p = np.array([400.0, 400.0, 400.0])
    a = np.array([0.0, np.nan, 80.0])
    ct = np.arange(0.0, 0.2001, 0.01)
    cp = np.where((ct % 0.1) < 0.05, 700.0, 100.0)
    c = integrate(*merge_curve(t, p, a, ct, cp))
    busy = c.at(0.04)[0] - c.at(0.01)[0]
    idle = c.at(0.09)[0] - c.at(0.06)[0]
    assert busy > 4 * idle
    assert c.at(0.2)[0] - c.at(0.0)[0] == pytest.approx(80.0)
    assert np.allclose(c.power_at([0.02, 0.07]), [700.0, 100.0])


def test_lagged_anchors_describe_energy_half_an_update_earlier():
    from green_mlops.meter.integrate import merge_curve

    t = np.round(np.arange(0, 1.0001, 0.1), 6)
    a = np.full(len(t), np.nan)
    a[0], a[-1] = 0.0, 100.0  # 100 W for 1 s, as a counter 50 ms stale at both reads would show
    c = integrate(*merge_curve(t, np.full(len(t), 100.0), a, np.array([]), np.array([]), lag=0.05))
    assert c.at(1.0)[0] - c.at(0.0)[0] == pytest.approx(100.0)
    assert c.final_until == pytest.approx(0.95)
