"""The paper's derived metrics (Table 3) against hand-computed values, and the inputs that give no number."""
import math

import pytest

from green_mlops.metrics import paper as metrics
from green_mlops.metrics.paper import (
    PAPER_METRICS,
    derived_metrics,
    energy_per_sample,
    energy_scaling_factor,
    gpu_energy_scaling_factor,
    macs_param,
    model_size_to_ram,
    overall_efficiency,
    parameters,
    work_done,
    work_per_unit_power,
)

# One inference pass by hand: 50 000 samples in 40 s, 6 000 J in all (150 W mean), 4 800 J on the GPU
# (120 W), ResNet18-like: 11.2 M trainable parameters, 556 M MACs per sample, 44.8 MB, on an 80 GB GPU.
RUN = dict(energy_J=6000.0, samples=50_000, duration_s=40.0, accuracy=0.9, macs=556e6,
           trainable_params=11.2e6, total_params=11.2e6, model_size_bytes=44.8e6, gpu_energy_J=4800.0,
           utilisation=0.8, ram_bytes=80e9)
WORK = 11.2e6 * 50_000 / 40.0  # parameter-samples per second: 1.4e10


def test_each_metric_by_hand():
    assert energy_per_sample(6000.0, 50_000) == pytest.approx(0.12)
    assert macs_param(556e6, 11.2e6) == pytest.approx(556 / 11.2)
    assert work_done(11.2e6, 50_000, 40.0) == pytest.approx(1.4e10)
    assert overall_efficiency(0.9, WORK, 0.8) == pytest.approx(0.9 * 1.4e10 / 0.8)
    assert work_per_unit_power(WORK, 150.0) == pytest.approx(1.4e10 / 150)
    assert energy_scaling_factor(150.0, 11.2e6) == pytest.approx(150 / 11.2e6)
    assert gpu_energy_scaling_factor(120.0, 11.2e6) == pytest.approx(120 / 11.2e6)
    assert parameters(11.2e6) == 11.2e6 and isinstance(parameters(7), float)
    assert model_size_to_ram(44.8e6, 80e9) == pytest.approx(5.6e-4)


def test_work_per_unit_power_is_parameter_samples_per_joule():
    # work_done / mean power == trainable params × samples / energy
    assert work_per_unit_power(WORK, 6000.0 / 40.0) == pytest.approx(11.2e6 * 50_000 / 6000.0)


def test_derived_metrics_all_from_one_run():
    out = derived_metrics(**RUN)
    assert set(out) == set(PAPER_METRICS) and len(PAPER_METRICS) == 9
    assert out["energy_per_sample"] == pytest.approx(0.12)
    assert out["macs_param"] == pytest.approx(556 / 11.2)
    assert out["work_done"] == pytest.approx(WORK)
    assert out["overall_efficiency"] == pytest.approx(0.9 * WORK / 0.8)
    assert out["work_per_unit_power"] == pytest.approx(WORK / 150.0)
    assert out["energy_scaling_factor"] == pytest.approx(150.0 / 11.2e6)
    assert out["gpu_energy_scaling_factor"] == pytest.approx(120.0 / 11.2e6)
    assert out["parameters"] == 11.2e6
    assert out["model_size_to_ram"] == pytest.approx(5.6e-4)
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())


def test_derived_metrics_with_observed_power_given():
    out = derived_metrics(**RUN, power_W=300.0, gpu_power_W=250.0)  # gross power, energy_J net of idle
    assert out["work_per_unit_power"] == pytest.approx(WORK / 300.0)
    assert out["energy_scaling_factor"] == pytest.approx(300.0 / 11.2e6)
    assert out["gpu_energy_scaling_factor"] == pytest.approx(250.0 / 11.2e6)
    assert out["energy_per_sample"] == pytest.approx(0.12)  # energy metrics still from energy_J


def test_derived_metrics_only_what_the_inputs_allow():
    assert derived_metrics() == {}
    assert derived_metrics(macs=2e6, trainable_params=1e4) == {"macs_param": 200.0, "parameters": 1e4}
    no_time = derived_metrics(energy_J=100.0, samples=10, trainable_params=5.0, accuracy=0.5, utilisation=0.5)
    assert set(no_time) == {"energy_per_sample", "parameters"}
    no_acc = derived_metrics(**{**RUN, "accuracy": None})
    assert "overall_efficiency" not in no_acc and "work_done" in no_acc
    no_gpu = derived_metrics(**{**RUN, "gpu_energy_J": None})
    assert "gpu_energy_scaling_factor" not in no_gpu and "energy_scaling_factor" in no_gpu
    with pytest.raises(TypeError):
        derived_metrics(energy=1.0)  # a misspelt input is an error, not a silently missing metric


@pytest.mark.parametrize("call", [
    lambda: energy_per_sample(None, 10), lambda: energy_per_sample(5.0, 0), lambda: energy_per_sample(5.0, None),
    lambda: energy_per_sample(float("nan"), 10), lambda: energy_per_sample(5.0, -3),
    lambda: macs_param(None, 10), lambda: macs_param(5, 0), lambda: macs_param(5, float("inf")),
    lambda: work_done(10, 5, 0), lambda: work_done(10, 0, 2.0), lambda: work_done(None, 5, 1.0),
    lambda: work_done(0, 5, 1.0),
    lambda: overall_efficiency(0.9, 10.0, 0.0), lambda: overall_efficiency(None, 10.0, 0.5),
    lambda: overall_efficiency(0.9, None, 0.5),
    lambda: overall_efficiency(0.9, 10.0, 80.0),  # a percentage: None, not a number 100× off
    lambda: overall_efficiency(90.0, 10.0, 0.8), lambda: overall_efficiency(0.9, 10.0, -0.1),
    lambda: work_per_unit_power(10.0, 0), lambda: work_per_unit_power(None, 100.0),
    lambda: energy_scaling_factor(100.0, 0), lambda: energy_scaling_factor(None, 10),
    lambda: energy_scaling_factor(-5.0, 10),
    lambda: gpu_energy_scaling_factor(100.0, 0), lambda: gpu_energy_scaling_factor(None, 10),
    lambda: parameters(None), lambda: parameters(-1), lambda: parameters(float("nan")),
    lambda: model_size_to_ram(1e6, 0), lambda: model_size_to_ram(None, 1e9), lambda: model_size_to_ram(1e6, None),
    lambda: macs_param(True, 10), lambda: macs_param("5", 10),
])
def test_missing_or_invalid_inputs_give_none(call):
    assert call() is None


def test_zero_work_is_a_real_value_where_it_is_one():
    assert macs_param(0, 10) == 0.0  # a model whose layers do no multiply-accumulates
    assert overall_efficiency(0.0, 10.0, 0.5) == 0.0  # an untrained model at 0 accuracy
    assert parameters(0) == 0.0  # a fully frozen model


def test_numpy_and_tensor_scalars_are_numbers():
    import numpy as np
    import torch
    assert macs_param(np.int64(200), torch.tensor(10)) == 20.0


def test_every_metric_is_documented_with_the_papers_words():
    for name in PAPER_METRICS:
        doc = getattr(metrics, name).__doc__
        assert doc and "Paper:" in doc and f"{name}:" in doc, name


def test_one_notion_of_a_number_for_metrics_and_analysis():
    """numbers.py: None (or NaN in a column) for what is no finite number; strings only when asked (params)."""
    import numpy as np
    import pandas as pd

    from green_mlops.metrics.numbers import column, number, ratio

    assert [number(v) for v in (3, 2.5, np.float32(1.5), None, True, "4", math.inf, math.nan)] == \
        [3.0, 2.5, 1.5, None, None, None, None, None]
    assert number("4.5", text=True) == 4.5 and number("x", text=True) is None
    assert ratio(-3, 2) == -1.5 and ratio(-3, 2, negative_ok=False) is None and ratio(1, 0) is None
    assert ratio(1e308, 1e-308) is None  # an overflow is no number either
    runs = pd.DataFrame({"a": ["1", "x", math.inf, 2]})
    assert column(runs, "a").tolist()[::3] == [1.0, 2.0] and column(runs, "a")[1:3].isna().all()
    assert column(runs, "missing").isna().all() and len(column(runs, "missing")) == 4
    assert np.isnan(column(runs, "a")[2])


def test_with_columns_is_assign_without_fragmenting_a_csv_frame(tmp_path):
    """numbers.py: with_columns gives assign's result (new columns last, a name given again replaced in place,
    attrs kept) with one concat, so read_csv's one-block-a-column frames raise no PerformanceWarning."""
    import warnings

    import pandas as pd

    from green_mlops.metrics.numbers import with_columns

    path = tmp_path / "wide.csv"
    pd.DataFrame({f"c{i}": [i, i + 1] for i in range(150)}).to_csv(path, index=False)
    wide = pd.read_csv(path)
    wide.attrs["notes"] = ["kept"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        out = with_columns(wide, c1=[7, 8], _e=pd.Series([1.0, 2.0]), _n=math.nan)
    pd.testing.assert_frame_equal(out, wide.copy().assign(c1=[7, 8], _e=pd.Series([1.0, 2.0]), _n=math.nan))
    assert out.attrs == {"notes": ["kept"]} and list(out.columns[:2]) == ["c0", "c1"]
