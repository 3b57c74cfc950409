"""Which counter gives a model's MACs: ``torch.utils.flop_counter`` by default, thop only when chosen.

* ``flop_counter`` (PyTorch's own, BSD): counts matrix multiplications, convolutions and attention at
  2 FLOPs per multiply-accumulate, so MACs = FLOPs / 2, exactly. Element-wise work (normalisation,
  activations, pooling, additions) is not counted.
* ``thop`` (ultralytics-thop, **AGPL-3.0**, ``pip install 'green-mlops[thop]'``, chosen with
  ``GREEN_MLOPS_MAC_COUNTER=thop``): counts the same convolutions and linear layers, plus its own rules
  for other layers: 4 per BatchNorm element in eval mode (2 without an affine), a pooling window's adds
  plus one divide per output, softmax and upsampling; ReLU and max-pooling count 0.

So the two agree on matmul and convolution work, and thop is higher by exactly its element-wise rules
(tests/test_model_stats.py checks this on zoo models). The counter used is logged as ``macs_counter``.
"""
from __future__ import annotations

import os

import torch

__all__ = ["COUNTERS", "ENV_MAC_COUNTER", "chosen_counter", "count_macs"]

ENV_MAC_COUNTER = "GREEN_MLOPS_MAC_COUNTER"
COUNTERS = ("flop_counter", "thop")


def chosen_counter(counter: str | None = None) -> str:
    """The MAC counter asked for: ``counter``, else $GREEN_MLOPS_MAC_COUNTER, else ``flop_counter`` (not checked)."""
    return (counter or os.environ.get(ENV_MAC_COUNTER, "") or "flop_counter").strip().lower()


def count_macs(probe: torch.nn.Module | None, x: torch.Tensor, flops: int | None, notes: list[str],
               counter: str | None = None) -> tuple[int | None, str | None]:
    """MACs of ``probe(x)`` and the counter's name; ``flops`` is flop_counter's count of the same pass.

    ``probe`` (a CPU copy of the model) is needed by thop only; flop_counter's MACs are ``flops / 2``.

    ``counter`` defaults to $GREEN_MLOPS_MAC_COUNTER, else ``flop_counter``. Never raises: what could
    not be counted is None and ``notes`` says why and how to fix it.
    """
    chosen = chosen_counter(counter)
    if chosen not in COUNTERS:
        notes.append(f"MACs not counted: {ENV_MAC_COUNTER}={chosen!r} is not a MAC counter; use one of "
                     f"{', '.join(COUNTERS)} (default flop_counter)")
        return None, None
    if chosen == "flop_counter":
        if flops is None:
            notes.append("MACs not counted: they are flop_counter's FLOPs / 2 and those could not be counted; "
                         f"{ENV_MAC_COUNTER}=thop counts by module hooks instead")
            return None, None
        return flops // 2, "torch.utils.flop_counter"
    if probe is None:
        notes.append("MACs not counted: thop runs a CPU copy of the model and none was given")
        return None, None
    return _thop(probe, x, notes), "thop"


def _thop(probe: torch.nn.Module, x: torch.Tensor, notes: list[str]) -> int | None:
    from green_mlops.metrics.model_stats import _quiet, _why

    try:
        import thop
        from thop.profile import register_hooks
    except ImportError as exc:
        notes.append(f"MACs not counted: {ENV_MAC_COUNTER}=thop but thop is not installed ({exc}); "
                     "pip install 'green-mlops[thop]' (AGPL-3.0), or unset it for flop_counter")
        return None
    try:
        with _quiet() as thop_warnings, torch.no_grad():
            macs = int(round(thop.profile(probe, inputs=(x,), verbose=False)[0]))
    except Exception as exc:  # unusual layers: say why, keep going
        notes.append(f"MACs not counted: {_why(exc)}")
        return None
    notes.extend(f"thop: {w}" for w in thop_warnings)
    unruled = sorted({type(m).__name__ for m in probe.modules()
                      if m._parameters and not any(t in register_hooks for t in type(m).__mro__)})
    if unruled:
        notes.append("MACs may be undercounted: thop has no rule for " + ", ".join(unruled)
                     + " (their matmul/linear/einsum calls are still counted)")
    return macs
