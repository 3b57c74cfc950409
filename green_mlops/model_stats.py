"""A model's characteristics as the paper logs them: parameters, buffers, size, MACs and FLOPs.

MACs come from ``thop`` (ultralytics-thop) and FLOPs from ``torch.utils.flop_counter``, both for
one sample, on a CPU copy of the model so the user's model gets no hooks and keeps its mode.
"""
from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelStats:
    """Sizes in bytes; ``macs`` and ``flops`` for one sample (None when they could not be counted)."""

    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_bytes: int
    macs: int | None
    flops: int | None
    input_shape: tuple[int, ...] | None
    notes: tuple[str, ...] = ()

    @property
    def model_size_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes

    def as_params(self) -> dict[str, int | str]:
        """Stable names for logging as run parameters."""
        out: dict[str, int | str] = {
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "buffer_bytes": self.buffer_bytes, "model_size_bytes": self.model_size_bytes,
        }
        if self.macs is not None:
            out["macs"] = self.macs
        if self.flops is not None:
            out["flops"] = self.flops
        if self.input_shape is not None:
            out["input_shape"] = "x".join(str(d) for d in self.input_shape)
        return out


def model_stats(model: torch.nn.Module, example_input: torch.Tensor | None = None) -> ModelStats:
    """Count parameters and buffers; with an example input, MACs and FLOPs of one sample too."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    macs = flops = None
    notes: list[str] = []
    shape = None
    if example_input is not None:
        x = example_input[:1].detach().to("cpu")
        shape = tuple(x.shape)
        probe = copy.deepcopy(model).to("cpu").eval()
        try:
            import thop

            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                macs = int(thop.profile(probe, inputs=(x,), verbose=False)[0])
        except Exception as exc:  # noqa: BLE001 - unusual layers: say why, keep going
            notes.append(f"MACs not counted: {type(exc).__name__}: {exc}")
        try:
            from torch.utils.flop_counter import FlopCounterMode

            probe = copy.deepcopy(model).to("cpu").eval()
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                probe(x)
            flops = int(counter.get_total_flops())
        except Exception as exc:  # noqa: BLE001
            notes.append(f"FLOPs not counted: {type(exc).__name__}: {exc}")
    return ModelStats(total, trainable, param_bytes, buffer_bytes, macs, flops, shape, tuple(notes))
