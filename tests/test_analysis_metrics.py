"""The analysis' metric tables against values worked out by hand (paper Table 3 and Table 6)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from green_mlops.analysis.paper_metrics import paper_metrics
from green_mlops.metrics.genai import (
    average_output_token_length,
    cache_hit_rate,
    energy_per_output_token,
    genai_metrics,
    request_rate,
)
from green_mlops.metrics.paper import PAPER_METRICS


def _run(**over):
    row = {"macs": 4.0e6, "trainable_params": 2.0e5, "model_size_bytes": 8.0e5, "ram_bytes": 8.0e9,
           "accuracy": 0.9, "train_energy_J": 1200.0, "train_time_s": 40.0, "train_samples": 100_000,
           "train_energy_gpu_J": 800.0, "train_util": 0.8, "inference_energy_J": 90.0, "inference_time_s": 6.0,
           "inference_samples": 10_000, "inference_energy_gpu_J": 60.0, "inference_util": 0.5}
    return {**row, **over}


def test_inference_window_by_hand():
    m = paper_metrics(pd.DataFrame([_run()]), "inference").iloc[0]
    assert list(m.index) == list(PAPER_METRICS)
    assert m["energy_per_sample"] == pytest.approx(90.0 / 10_000)
    assert m["macs_param"] == pytest.approx(4.0e6 / 2.0e5)  # 20 uses of each weight per sample
    work = 2.0e5 * 10_000 / 6.0  # parameter-samples per second
    assert m["work_done"] == pytest.approx(work)
    assert m["overall_efficiency"] == pytest.approx(0.9 * work / 0.5)
    assert m["work_per_unit_power"] == pytest.approx(work / (90.0 / 6.0))  # = params × samples / energy
    assert m["work_per_unit_power"] == pytest.approx(2.0e5 * 10_000 / 90.0)
    assert m["energy_scaling_factor"] == pytest.approx(15.0 / 2.0e5)  # 15 W mean power
    assert m["gpu_energy_scaling_factor"] == pytest.approx(10.0 / 2.0e5)  # 60 J over 6 s
    assert m["parameters"] == 2.0e5
    assert m["model_size_to_ram"] == pytest.approx(1e-4)


def test_training_window_prefers_what_the_callback_logged():
    logged = _run(macs_param=19.5, energy_per_sample=0.0125)  # the callback's own values win
    m = paper_metrics(pd.DataFrame([logged, _run()]), "train")
    assert m.loc[0, "macs_param"] == 19.5 and m.loc[0, "energy_per_sample"] == 0.0125
    assert m.loc[1, "energy_per_sample"] == pytest.approx(1200.0 / 100_000)
    assert m.loc[1, "work_done"] == pytest.approx(2.0e5 * 100_000 / 40.0)
    assert m.loc[1, "gpu_energy_scaling_factor"] == pytest.approx(20.0 / 2.0e5)


def test_missing_or_invalid_inputs_give_nan_not_zero():
    m = paper_metrics(pd.DataFrame([_run(inference_util=55.0, inference_energy_gpu_J=None, macs=None)]),
                      "inference").iloc[0]
    assert math.isnan(m["overall_efficiency"])  # a percentage passed as utilisation is refused
    assert math.isnan(m["gpu_energy_scaling_factor"]) and math.isnan(m["macs_param"])
    assert m["energy_per_sample"] == pytest.approx(0.009)
    with pytest.raises(ValueError, match="phase must be one of"):
        paper_metrics(pd.DataFrame([_run()]), "eval")


def test_genai_metrics_by_hand():
    m = genai_metrics(energy_J=3600.0, requests=1200, duration_s=60.0, output_tokens=240_000, cache_hits=300,
                      cache_lookups=1200, forward_flops=2.0e9, total_params=1.0e9, model_size_bytes=1.0e9,
                      vram_bytes=80e9)
    assert m == pytest.approx({"energy_per_sample": 3.0, "flops": 2.0e9, "model_size_to_ram": 1 / 80,
                               "parameters": 1.0e9, "request_rate": 20.0, "average_output_token_length": 200.0,
                               "cache_hit_rate": 0.25, "energy_per_output_token": 3600.0 / 240_000})
    assert genai_metrics(energy_J=10.0, requests=5, duration_s=1.0, offered_rps=40)["request_rate"] == 40
    assert cache_hit_rate(5, 4) is None and request_rate(10, 0) is None
    assert energy_per_output_token(1.0, None) is None and average_output_token_length(-1, 2) is None
