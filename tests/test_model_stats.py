"""Model characteristics: parameter and buffer counts by hand, MACs/FLOPs of one sample, the user's model untouched."""
import copy
import dataclasses
import sys

import pytest
import torch
from torch import nn

from green_mlops.metrics.model_stats import ModelStats, model_stats


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_mlp_counts_by_hand():
    s = model_stats(_mlp(), torch.randn(32, 10))
    assert s.total_params == s.trainable_params == (10 * 20 + 20) + (20 * 5 + 5) == 325
    assert s.param_bytes == 325 * 4 and s.buffer_bytes == 0 and s.model_size_bytes == 325 * 4
    assert s.macs == 10 * 20 + 20 * 5  # one multiply-accumulate per weight of a Linear, per sample
    assert s.flops == 2 * s.macs  # torch's counter: 2 FLOPs per MAC of a matmul, forward only
    assert s.input_shape == (1, 10) and s.notes == ()


def test_linear_macs_by_hand_and_one_sample_whatever_the_batch():
    lin = nn.Linear(64, 3)
    assert model_stats(lin, torch.randn(1, 64)).macs == 64 * 3
    assert model_stats(lin, torch.randn(128, 64)).macs == 64 * 3
    # a sequence of 7 tokens is one sample: the Linear runs per token
    assert model_stats(lin, torch.randn(5, 7, 64)).macs == 7 * 64 * 3


def test_cnn_counts_buffers_and_macs_by_hand():
    s = model_stats(_cnn(), torch.randn(4, 3, 8, 8))
    conv, bn, fc = 3 * 8 * 3 * 3 + 8, 8 + 8, 8 * 10 + 10
    assert s.total_params == s.trainable_params == conv + bn + fc == 330
    # BatchNorm: running_mean and running_var (8 float32 each) and num_batches_tracked (one int64)
    assert s.buffer_bytes == (8 + 8) * 4 + 8
    assert s.model_size_bytes == s.param_bytes + s.buffer_bytes == 330 * 4 + 72
    out = 8 * 8 * 8  # conv output elements of one 8×8 sample
    conv_macs = out * 3 * 3 * 3
    bn_macs = out * 4  # thop: normalise (2) and the affine scale/shift (×2) per element
    pool_macs = 8 * (8 * 8 + 1)  # thop: a kernel of 64 adds and one divide per output
    fc_macs = 8 * 10
    assert s.macs == conv_macs + fc_macs  # flop_counter: the conv and the matmul only
    assert s.flops == 2 * conv_macs + 2 * fc_macs
    assert s.as_params() == {"total_params": 330, "trainable_params": 330, "buffer_bytes": 72,
                             "model_size_bytes": 1392, "macs": s.macs, "macs_counter": "torch.utils.flop_counter",
                             "flops": s.flops, "input_shape": "1x3x8x8"}
    t = model_stats(_cnn(), torch.randn(4, 3, 8, 8), mac_counter="thop")
    assert t.macs == conv_macs + bn_macs + pool_macs + fc_macs and t.as_params()["macs_counter"] == "thop"
    assert t.flops == s.flops


def test_frozen_layers_and_shared_weights():
    model = _mlp()
    model[0].requires_grad_(False)
    s = model_stats(model)
    assert s.total_params == 325 and s.trainable_params == 105
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert model_stats(tied).total_params == 16  # a shared tensor is one set of parameters


def test_without_example_input_no_macs_or_flops():
    s = model_stats(_cnn())
    assert s.macs is None and s.flops is None and s.input_shape is None
    assert set(s.as_params()) == {"total_params", "trainable_params", "buffer_bytes", "model_size_bytes"}


def test_user_model_unchanged_after_profiling():
    torch.manual_seed(0)
    model = _cnn()
    model.train()
    model[1].eval()  # a mixed mode must survive too
    modes = [m.training for m in model.modules()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    buffers = [n for n, _ in model.named_buffers()]
    hooks = _hooks(model)
    x = torch.randn(16, 3, 8, 8)
    rng = torch.get_rng_state()
    model_stats(model, x)
    assert [m.training for m in model.modules()] == modes
    assert _hooks(model) == hooks == 0
    assert [n for n, _ in model.named_buffers()] == buffers
    assert not any(hasattr(m, "total_ops") or hasattr(m, "total_params") for m in model.modules())
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats not updated
    assert all(p.requires_grad for p in model.parameters()) and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_random_forward_does_not_advance_the_users_random_stream():
    class Noisy(nn.Module):
        def forward(self, x):
            return x + 0 * torch.rand_like(x)

    torch.manual_seed(1)
    model, x = nn.Sequential(nn.Linear(3, 3), Noisy()), torch.randn(2, 3)
    rng = torch.get_rng_state()
    model_stats(model, x)
    assert torch.equal(torch.get_rng_state(), rng)


def test_profiling_failure_gives_none_and_a_note_never_an_exception():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            raise RuntimeError("this layer is unusual")

    s = model_stats(Broken(), torch.randn(3, 4))
    assert s.macs is None and s.flops is None and s.total_params == 10
    assert any("FLOPs not counted" in n and "unusual" in n for n in s.notes)
    assert any("MACs not counted" in n for n in s.notes)
    wrong = model_stats(_mlp(), torch.randn(3, 7))  # input of the wrong width
    assert wrong.macs is None and wrong.flops is None and wrong.notes


@pytest.mark.parametrize("bad", [torch.tensor(1.0), torch.randn(0, 10), [torch.randn(1, 10)]])
def test_unusable_example_inputs_are_noted(bad):
    s = model_stats(_mlp(), bad)
    assert s.macs is None and s.flops is None and s.total_params == 325 and s.notes


def test_layer_without_a_thop_rule_is_noted():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(6))

        def forward(self, x):
            return x * self.w

    s = model_stats(nn.Sequential(nn.Linear(6, 6), Scale()), torch.randn(2, 6), mac_counter="thop")
    assert s.macs == 36 and any("Scale" in n and "undercounted" in n for n in s.notes)


def test_thop_is_quiet(capsys):
    model_stats(nn.Sequential(_mlp(), nn.GELU()), torch.randn(2, 10), mac_counter="thop")
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_stats_are_frozen():
    s = model_stats(_mlp())
    assert isinstance(s, ModelStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.macs = 1  # type: ignore[misc]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_model_profiled_on_a_cpu_copy():
    model = _cnn().cuda().train()
    s = model_stats(model, torch.randn(8, 3, 8, 8, device="cuda"))
    assert s.macs and s.flops and all(p.is_cuda for p in model.parameters()) and model.training


def test_mac_counter_chosen_by_environment_and_bad_choices_are_noted(monkeypatch):
    monkeypatch.setenv("GREEN_MLOPS_MAC_COUNTER", "thop")
    assert model_stats(_cnn(), torch.randn(1, 3, 8, 8)).macs_counter == "thop"
    monkeypatch.setenv("GREEN_MLOPS_MAC_COUNTER", "fvcore")
    s = model_stats(_cnn(), torch.randn(1, 3, 8, 8))
    assert s.macs is None and s.flops and any("flop_counter, thop" in n for n in s.notes)
    monkeypatch.delenv("GREEN_MLOPS_MAC_COUNTER")
    monkeypatch.setitem(sys.modules, "thop", None)  # as if the thop extra were not installed
    s = model_stats(_cnn(), torch.randn(1, 3, 8, 8), mac_counter="thop")
    assert s.macs is None and any("pip install 'green-mlops[thop]'" in n for n in s.notes)
    assert model_stats(_cnn(), torch.randn(1, 3, 8, 8)).macs  # the default never needs thop


@pytest.mark.parametrize("arch", ["lenet", "mobilenet"])
def test_counters_agree_on_zoo_models_up_to_thops_element_wise_rules(arch):
    """The documented difference, checked: with thop's rules for every layer but convolutions and linear
    layers set to zero, thop's MACs are flop_counter's FLOPs / 2."""
    thop = pytest.importorskip("thop")
    from thop.vision.basic_hooks import zero_ops

    from green_mlops.zoo import build_model

    model = build_model(arch).eval()
    x = torch.randn(1, 3, 32, 32)
    ours = model_stats(model, x)
    matmul_only = {type(m): zero_ops for m in model.modules()
                   if not isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}
    with torch.no_grad():
        thop_matmul = thop.profile(copy.deepcopy(model), inputs=(x,), custom_ops=matmul_only, verbose=False)[0]
    full = model_stats(model, x, mac_counter="thop").macs
    assert ours.macs == ours.flops // 2 == pytest.approx(thop_matmul, rel=1e-9)
    if arch == "lenet":  # functional ReLU and max-pooling: thop has nothing more to count
        assert full == ours.macs
    else:  # thop's BatchNorm and average-pooling rules add to the same conv/linear work
        assert full > ours.macs


def test_default_counter_runs_on_the_meta_device_without_copying_the_weights(monkeypatch):
    import green_mlops.metrics.model_stats as ms

    def no_copy(model):
        raise AssertionError("the weights were copied to the CPU")

    monkeypatch.setattr(ms, "_cpu_copy", no_copy)
    s = model_stats(_cnn(), torch.randn(4, 3, 8, 8))
    assert s.macs == 8 * 8 * 8 * 3 * 3 * 3 + 8 * 10 and s.flops == 2 * s.macs and s.notes == ()


def test_a_model_the_meta_device_cannot_run_is_counted_on_a_cpu_copy():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 4)

        def forward(self, x):
            return self.lin(x) * 2 if float(x.abs().sum()) >= 0 else x  # needs the data: not on meta

    s = model_stats(DataDependent(), torch.randn(3, 6))
    assert s.macs == 6 * 4 and s.flops == 2 * 6 * 4 and s.notes == ()


def test_attention_is_counted_whatever_kernel_the_cpu_would_pick():
    """Self-attention as vision transformers call it, one sequence of 5 tokens of width 8: the four projections
    and both matmuls. In eval mode a CPU pass takes a fused kernel flop_counter cannot see (it counted 0)."""
    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    s = model_stats(SelfAttention(), torch.randn(2, 5, 8))
    projections = 4 * 5 * 8 * 8
    scores_and_mix = 2 * 5 * 5 * 8  # Q·Kᵀ and softmax(·)·V, over both heads
    assert s.macs == projections + scores_and_mix


def test_lstm_layers_are_counted_though_the_cpu_fuses_them():
    """An LSTM of width 16 → 32 over 7 steps: four gates, each an input and a hidden matmul per step."""
    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(16, 32, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]

    s = model_stats(Tagger(), torch.randn(2, 7, 16))
    assert s.macs == 7 * 4 * (16 * 32 + 32 * 32)


def test_activation_elements_count_every_layers_output_for_one_sample_on_the_meta_device():
    from green_mlops.metrics.model_stats import activation_elements

    mlp = _mlp()
    assert activation_elements(mlp, torch.randn(32, 10)) == 20 + 20 + 5  # Linear, ReLU, Linear outputs per sample
    # conv 8×8×8, batch norm the same, ReLU the same, pooled 8, flattened 8, logits 10
    assert activation_elements(_cnn(), torch.randn(4, 3, 8, 8)) == 3 * 8 * 8 * 8 + 8 + 8 + 10
    assert _hooks(mlp) == 0 and next(mlp.parameters()).device.type == "cpu"  # the user's model is untouched

    class DataDependent(nn.Module):
        def forward(self, x):
            return x[x > 0]  # the meta device cannot know the output's size

    assert activation_elements(DataDependent(), torch.randn(2, 4)) is None
