"""End-of-run figures every training integration logs: model characteristics and the paper's Table 3."""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from green_mlops import names
from green_mlops.meter import EnergyResult, memory_total_bytes
from green_mlops.metrics.model_stats import model_stats
from green_mlops.metrics.paper import derived_metrics

log = logging.getLogger(__name__)

_ACC = re.compile(r"(^|[/_])acc(uracy)?($|[/_])", re.I)


def first_array(batch: Any) -> Any:
    """The first array (a tensor: anything with a ``shape`` of at least one dimension) in a batch, following
    lists, tuples and mappings (a Hugging Face ``BatchEncoding`` too); None when there is none."""
    if len(getattr(batch, "shape", ())) > 0:
        return batch
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        found = first_array(item)
        if found is not None:
            return found
    return None


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first array (0 when there is none)."""
    x = first_array(batch)
    return int(x.shape[0]) if x is not None else 0


def model_params(model: Any, example: Any) -> dict[str, Any] | None:
    """Parameters, MACs per sample and size of ``model`` (None, with a warning, when they cannot be had)."""
    try:
        return model_stats(model, example[:1] if example is not None else None).as_params()
    except Exception as exc:  # characteristics are a bonus; training goes on
        log.warning("green_mlops: could not compute model characteristics: %s", exc)
        return None


def find_accuracy(metrics: Mapping[str, Any], key: str | None = None) -> float | None:
    """The accuracy among logged metrics: ``key`` if given, else the first name with "acc" (validation first)."""
    def num(v: Any) -> float | None:
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    if key:
        return num(metrics.get(key))
    keys = sorted((k for k in metrics if _ACC.search(k)), key=lambda k: (not k.startswith(("val", "eval")), k))
    return num(metrics[keys[0]]) if keys else None


def training_figures(result: EnergyResult, total_J: float, *, train_J: float, samples: int,
                     accuracy: float | None, model: Mapping[str, Any] | None,
                     utilisation: float | None) -> dict[str, float]:
    """``energy_per_sample_train_J`` and Table 3's metrics by their paper names (bare; the run namespaces them)."""
    if not samples:
        return {}
    model = model or {}
    out = {names.ENERGY_PER_SAMPLE_TRAIN: train_J / samples}
    inputs = {"energy_J": total_J, "samples": samples, "duration_s": result.duration_s, "accuracy": accuracy,
              "macs": model.get("macs"), "trainable_params": model.get("trainable_params"),
              "total_params": model.get("total_params"), "model_size_bytes": model.get("model_size_bytes"),
              "gpu_energy_J": result.domain_J("gpu"), "utilisation": utilisation, "ram_bytes": memory_total_bytes()}
    try:
        out.update({k: v for k, v in derived_metrics(**inputs).items() if v is not None})
    except TypeError as exc:
        log.warning("green_mlops: paper metrics skipped: %s", exc)
    return out
