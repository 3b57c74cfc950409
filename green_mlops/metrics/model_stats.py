"""A model's characteristics as the paper logs them (§5.3): parameters, buffers, size, MACs and FLOPs.

* ``model_size_bytes`` is "the model ... loaded in the VRAM. It includes both the parameters and
  buffers": the bytes of every parameter and buffer tensor, each shared tensor counted once.
* ``trainable_params`` are those with ``requires_grad`` (frozen layers are not trainable).
* ``flops`` come from ``torch.utils.flop_counter`` (forward pass only) and ``macs`` from the same count
  by default, or from thop when chosen (:mod:`green_mlops.metrics.macs` says how they differ), both for ONE
  sample: a batch of 1 shaped like ``example_input[0:1]``.

Counting runs on a copy of the model in eval mode under ``torch.no_grad`` and a forked CPU RNG, so the
user's model gets no hooks or buffers, keeps its training flag and device, and the global random stream
is not advanced. flop_counter counts on PyTorch's ``meta`` device first: shapes only, so neither the
weights are copied nor any arithmetic done (tens of milliseconds where a CPU pass of a ResNet-50 takes
seconds). A model that cannot run there (data-dependent Python, a custom kernel, tensors it makes on
another device) is counted on a CPU copy instead, as thop always is. On the meta device attention and
LSTM layers run PyTorch's reference path, whose matmuls flop_counter sees; a CPU pass in eval mode takes
fused kernels it cannot see (they counted 0). Counting never raises: what could not be counted is
``None``, and ``notes`` says why.

:func:`activation_elements` is not among the paper's characteristics: the elements every layer outputs for one
sample (forward), i.e. the activations a training step writes and reads back. Small models on a GPU are bound by
that memory traffic and by the number of kernels, not by arithmetic, so it ranks their training energy where
MACs do not (H200 digits grid, 16 architectures at batch 256: Spearman 0.95 against 0.66 for MACs and 0.80 for
MACs per parameter). The search uses it to order architectures it has not trained yet.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from green_mlops.metrics.macs import chosen_counter, count_macs

__all__ = ["ModelStats", "activation_elements", "model_stats"]


@dataclass(frozen=True)
class ModelStats:
    """Sizes in bytes; ``macs`` and ``flops`` for one sample, None when they could not be counted."""

    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    model_size_bytes: int  # param_bytes + buffer_bytes
    macs: int | None = None
    flops: int | None = None
    input_shape: tuple[int, ...] | None = None  # the one-sample shape profiled, e.g. (1, 3, 32, 32)
    notes: tuple[str, ...] = ()  # why something is None, or may be undercounted
    macs_counter: str | None = None  # which counter gave ``macs``: torch.utils.flop_counter or thop

    def as_params(self) -> dict[str, int | str]:
        """Stable names for logging as run parameters; values that could not be counted are left out."""
        out: dict[str, int | str] = {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "buffer_bytes": self.buffer_bytes,
            "model_size_bytes": self.model_size_bytes,
        }
        if self.macs is not None:
            out["macs"] = self.macs
            if self.macs_counter is not None:
                out["macs_counter"] = self.macs_counter
        if self.flops is not None:
            out["flops"] = self.flops
        if self.input_shape is not None:
            out["input_shape"] = "x".join(str(d) for d in self.input_shape)
        return out


def model_stats(model: torch.nn.Module, example_input: torch.Tensor | None = None, *,
                mac_counter: str | None = None) -> ModelStats:
    """Count parameters and buffers; given an example input (any batch size), MACs and FLOPs of one sample too.

    Never raises on a model it cannot profile: ``macs``/``flops`` are then None and ``notes`` says why.
    ``mac_counter``: ``flop_counter`` (default) or ``thop``; None reads $GREEN_MLOPS_MAC_COUNTER.
    """
    notes: list[str] = []
    total = trainable = param_bytes = 0
    for p in model.parameters():
        if isinstance(p, torch.nn.parameter.UninitializedParameter):
            notes.append("a lazy module's parameters are not initialised yet and are not counted")
            continue
        total += p.numel()
        param_bytes += p.numel() * p.element_size()
        if p.requires_grad:
            trainable += p.numel()
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers()
                       if not isinstance(b, torch.nn.parameter.UninitializedBuffer))

    macs = flops = shape = counter = None
    if example_input is not None:
        macs, flops, shape, counter = _profile(model, example_input, notes, mac_counter)
    return ModelStats(total_params=total, trainable_params=trainable, param_bytes=param_bytes,
                      buffer_bytes=buffer_bytes, model_size_bytes=param_bytes + buffer_bytes,
                      macs=macs, flops=flops, input_shape=shape, notes=tuple(dict.fromkeys(notes)),
                      macs_counter=counter)


def _profile(model: torch.nn.Module, example_input: torch.Tensor, notes: list[str], mac_counter: str | None
             ) -> tuple[int | None, int | None, tuple[int, ...] | None, str | None]:
    if not isinstance(example_input, torch.Tensor):
        notes.append(f"MACs and FLOPs not counted: example_input is a {type(example_input).__name__}, "
                     "not a tensor; pass one batch tensor")
        return None, None, None, None
    if example_input.dim() == 0 or example_input.shape[0] == 0:
        notes.append(f"MACs and FLOPs not counted: example_input of shape {tuple(example_input.shape)} has no "
                     "sample along its first (batch) dimension")
        return None, None, None, None
    if chosen_counter(mac_counter) != "thop":
        flops = _meta_flops(model, example_input[0:1].detach())
        if flops is not None:
            macs, macs_counter = count_macs(None, example_input[0:1], flops, notes, mac_counter)
            return macs, flops, tuple(example_input[0:1].shape), macs_counter
    try:
        x = example_input[0:1].detach().to("cpu")
        probe = _cpu_copy(model).eval()
    except Exception as exc:  # e.g. a meta-device model or an attribute deepcopy refuses
        notes.append(f"MACs and FLOPs not counted: could not copy the model to the CPU ({_why(exc)})")
        return None, None, None, None
    shape = tuple(x.shape)

    # FLOPs first: FlopCounterMode leaves the copy as it was; thop, when chosen, then borrows it for its hooks.
    flops = None
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with _quiet(), torch.no_grad(), counter:
            probe(x)
        flops = int(counter.get_total_flops())
    except Exception as exc:  # unusual layers: say why, keep going
        notes.append(f"FLOPs not counted: {_why(exc)}")
    macs, macs_counter = count_macs(probe, x, flops, notes, mac_counter)
    return macs, flops, shape, macs_counter


def _meta_flops(model: torch.nn.Module, x: torch.Tensor) -> int | None:
    """flop_counter's FLOPs of ``model(x)`` run on a copy on the meta device; None if the model cannot run there."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        probe = _copy_on(model, "meta").eval()
        counter = FlopCounterMode(display=False)
        with _quiet(), torch.no_grad(), counter:
            probe(x.to("meta"))
        return int(counter.get_total_flops())
    except Exception:  # anything the meta device cannot do: the CPU copy counts instead
        return None


def activation_elements(model: torch.nn.Module, example_input: torch.Tensor) -> int | None:
    """Elements output by every leaf module for one sample (forward, on the meta device); None if it cannot run."""
    total = [0]

    def count(module: torch.nn.Module, inputs: object, output: object) -> None:
        outs = output if isinstance(output, (tuple, list)) else (output,)
        total[0] += sum(o.numel() for o in outs if isinstance(o, torch.Tensor))

    try:
        probe = _copy_on(model, "meta").eval()
        for m in probe.modules():
            if not any(True for _ in m.children()):
                m.register_forward_hook(count)
        with _quiet(), torch.no_grad():
            probe(example_input[0:1].detach().to("meta"))
    except Exception:  # a model the meta device cannot run: no proxy, the search falls back to MACs
        return None
    return total[0] or None


def _copy_on(model: torch.nn.Module, device: str) -> torch.nn.Module:
    """Deep copy whose parameters and buffers are copies on ``device`` (on ``meta``: shapes only), made without
    a second copy where the model is."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to(device, copy=True), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b.detach().to(device, copy=True)
    return copy.deepcopy(model, memo)


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    """Deep copy on the CPU, made without a second copy on the GPU."""
    return _copy_on(model, "cpu").to("cpu")


@contextlib.contextmanager
def _quiet() -> Iterator[list[str]]:
    """Swallow console output and collect thop's log warnings; keep the CPU random stream where it was."""
    caught: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record.getMessage())

    thop_log = logging.getLogger("thop")
    handler, propagate = _Collect(logging.WARNING), thop_log.propagate
    thop_log.addHandler(handler)
    thop_log.propagate = False
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            yield caught
    finally:
        thop_log.removeHandler(handler)
        thop_log.propagate = propagate


def _why(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."

