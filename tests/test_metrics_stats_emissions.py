"""Pure functions: the paper's metrics, model characteristics and CO2e, against hand-computed values."""
import pytest
import torch

from green_mlops.metrics import paper as metrics
from green_mlops.metrics.emissions import COUNTRY_INTENSITY_G_PER_KWH, carbon_intensity, co2e_g
from green_mlops.metrics.model_stats import model_stats


def test_paper_metrics_by_hand():
    out = metrics.derived_metrics(energy_J=1000.0, samples=500, duration_s=10.0, accuracy=0.9, macs=2e6,
                                  trainable_params=1e4, model_size_bytes=4e4, gpu_energy_J=800.0,
                                  utilisation=0.5, ram_bytes=1e9)
    assert out["energy_per_sample"] == 2.0
    assert out["macs_param"] == 200.0
    assert out["work_done"] == 1e4 * 500 / 10  # parameter-samples per second
    assert out["overall_efficiency"] == pytest.approx(0.9 * 5e5 / 0.5)
    assert out["work_per_unit_power"] == pytest.approx(5e5 / 100.0)
    assert out["energy_scaling_factor"] == pytest.approx(100.0 / 1e4)
    assert out["gpu_energy_scaling_factor"] == pytest.approx(80.0 / 1e4)
    assert out["parameters"] == 1e4 and out["model_size_to_ram"] == 4e-5


def test_missing_inputs_give_no_number_not_zero():
    out = metrics.derived_metrics(energy_J=10.0, samples=0, duration_s=None)
    assert out == {}
    assert metrics.macs_param(None, 10) is None and metrics.macs_param(5, 0) is None
    assert metrics.overall_efficiency(0.9, 10.0, 0.0) is None


def test_model_stats_counts_and_leaves_the_model_alone():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    model.train()
    model[2].weight.requires_grad_(False)
    keys = set(model.state_dict())
    s = model_stats(model, torch.randn(16, 8))
    assert s.total_params == 8 * 4 + 4 + 4 + 4 + 4 * 2 + 2
    assert s.trainable_params == s.total_params - 8
    assert s.buffer_bytes == (4 + 4) * 4 + 8  # running mean/var float32, num_batches_tracked int64
    assert s.macs == 8 * 4 + 4 * 2  # flop_counter: in×out per Linear; BatchNorm is element-wise, not counted
    # thop (chosen): also 4 per BatchNorm feature in eval mode (normalise, scale, shift)
    assert model_stats(model, torch.randn(16, 8), mac_counter="thop").macs == 8 * 4 + 4 * 2 + 4 * 4
    assert s.flops == 2 * (8 * 4 + 4 * 2)  # torch's counter: matmuls only, forward, one sample
    assert s.input_shape == (1, 8) and s.as_params()["input_shape"] == "1x8"
    assert model.training and set(model.state_dict()) == keys
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())
    assert model_stats(model).macs is None


def test_co2e_and_intensity_sources(monkeypatch):
    monkeypatch.delenv("GREEN_MLOPS_CARBON_INTENSITY", raising=False)
    monkeypatch.delenv("GREEN_MLOPS_COUNTRY", raising=False)
    assert carbon_intensity().region == "WORLD" and "world average" in carbon_intensity().source
    fr = carbon_intensity("fr")
    assert fr.g_per_kwh == COUNTRY_INTENSITY_G_PER_KWH["FR"] and fr.region == "FR"
    mine = carbon_intensity(g_per_kwh=400)
    assert co2e_g(3.6e6, mine) == 400 and co2e_g(3.6e6, mine, pue=1.5) == 600
    monkeypatch.setenv("GREEN_MLOPS_CARBON_INTENSITY", "123")
    assert carbon_intensity().g_per_kwh == 123
    with pytest.raises(ValueError, match="carbon_g_per_kwh"):
        carbon_intensity("XX")
    with pytest.raises(ValueError, match="PUE"):
        co2e_g(1.0, mine, pue=0.9)
    with pytest.raises(ValueError, match="0 or more"):
        carbon_intensity(g_per_kwh=-1)
