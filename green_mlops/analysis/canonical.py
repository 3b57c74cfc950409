"""One run's canonical columns, from its MLflow params/metrics/tags and the callback's summary artifacts.

Energies per phase (``train`` = the fit, ``inference`` = the test or predict stage), each over the window
of that phase's time: gross in total and per device, net of idle (Eq. 1–2) in total and per device, idle
power per device, and mean power per device. Where a run holds per-device energies only from the
per-step metrics (``energy/{gpu,cpu,dram}_J``, which stop at the last training step), mean power is that
window's device split applied to the fit's energy over the fit's time, and ``train_device_window`` says so.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from green_mlops.analysis.schema import DOMAINS, device_col, idle_col, idle_metric, net_col, power_col, stage_metric

__all__ = ["ACCURACY_KEYS", "INFERENCE_STAGES", "canonical", "first", "hardware_label", "provenance_text"]

ACCURACY_KEYS = ("val_acc", "accuracy", "val_accuracy", "test_acc", "test_accuracy", "acc")
TRAIN_ENERGY_KEYS = ("energy/fit_J", "energy/training_J")
INFERENCE_STAGES = ("test", "predict")
#: ``{phase}_device_window`` values: per-device energies over the phase's whole window, or over the steps.
STAGE_WINDOW, STEP_WINDOW = "stage", "training steps"


def first(row: Mapping[str, Any], keys: Iterable[str]) -> float | None:
    """The first of ``keys`` that holds a finite number in ``row``."""
    for k in keys:
        v = row.get(k)
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            return f
    return None


def hardware_label(tags: Mapping[str, Any]) -> str:
    """A short name for a hardware configuration, from the ``green_mlops.hw.*`` tags of a run."""
    def tag(name: str) -> str | None:
        v = tags.get(f"green_mlops.hw.{name}")
        return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)

    cpu, cpus, gpus, names = tag("cpu_model"), tag("cpu_count"), tag("gpu_count"), tag("gpu_names")
    if cpu is None and gpus is None:
        return "unknown hardware (no green_mlops.hw tags)"
    if cpu is None and gpus != "0":
        return f"{gpus}× {names or 'GPU'} (host not recorded)"
    host = f"{cpu or 'unknown CPU'}" + (f" ({cpus} CPUs)" if cpus else "")
    if gpus and gpus != "0":
        return f"{gpus}× {names or 'GPU'} + {host}"
    return f"{host}, no GPU"


def _provenance_from_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for d in DOMAINS:
        method, prov = tags.get(f"green_mlops.method.{d}"), tags.get(f"green_mlops.provenance.{d}")
        if isinstance(method, str) and method not in ("", "none"):
            out[d] = f"{prov if isinstance(prov, str) and prov != 'none' else 'unknown'} ({method})"
    return out


def _provenance_from_summary(summary: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, set[str]] = {}
    for s in summary.get("local", {}).get("sources", []):
        out.setdefault(s.get("domain", "?"), set()).add(f"{s.get('provenance', 'unknown')} ({s.get('method', '?')})")
    return {d: ", ".join(sorted(v)) for d, v in out.items()}


def provenance_text(per_domain: Mapping[str, str]) -> str:
    """``gpu: measured (nvml-energy-counter); cpu: estimated (tdp-utilisation-model)``; "unknown" if empty."""
    parts = [f"{d}: {per_domain[d]}" for d in DOMAINS if d in per_domain]
    parts += [f"{d}: {v}" for d, v in per_domain.items() if d not in DOMAINS]
    return "; ".join(parts) or "unknown (no green_mlops.method tags or summary)"


def _domain(summary: Mapping[str, Any] | None, domain: str, key: str) -> float | None:
    d = (summary or {}).get("local", {}).get("domains", {}).get(domain)
    return first(d, [key]) if d else None


def _idle_W(summary: Mapping[str, Any] | None, domain: str) -> float | None:
    vals = [first(s, ["idle_power_W"]) for s in (summary or {}).get("local", {}).get("sources", [])
            if s.get("domain") == domain]
    return sum(v for v in vals if v is not None) if vals and all(v is not None for v in vals) else None


def _phase(out: dict[str, Any], row: Mapping[str, Any], phase: str, stage: str | None,
           summary: Mapping[str, Any] | None) -> None:
    """Gross, net, per-device energies and mean power of one phase, each over the phase's window."""
    duration = first(row, [f"time/{stage}_s"]) if stage else None
    local_net = (summary or {}).get("local", {}).get("net_J")
    out[net_col(phase)] = first(row, [stage_metric(stage, net=True)]) if stage else None
    if out[net_col(phase)] is None and local_net is not None:
        out[net_col(phase)] = first({"v": local_net}, ["v"])
    window = STAGE_WINDOW
    for d in DOMAINS:
        gross = first(row, [stage_metric(stage, d)]) if stage else None
        gross = gross if gross is not None else _domain(summary, d, "energy_J")
        if gross is None and phase == "train" and first(row, [f"energy/{d}_J"]) is not None:
            gross, window = first(row, [f"energy/{d}_J"]), STEP_WINDOW
        out[device_col(phase, d)] = gross
        net = first(row, [stage_metric(stage, d, net=True)]) if stage else None
        out[net_col(phase, d)] = net if net is not None else _domain(summary, d, "net_J")
    devices = {d: out[device_col(phase, d)] for d in DOMAINS if out[device_col(phase, d)] is not None}
    total = out[f"{phase}_energy_J"]
    scale = 1.0
    if window == STEP_WINDOW:  # the steps' device split, applied to the whole fit's energy and time
        scale = total / sum(devices.values()) if total and sum(devices.values()) > 0 else math.nan
    for d in DOMAINS:
        e = out[device_col(phase, d)]
        out[power_col(phase, d)] = e * scale / duration if e is not None and duration else None
    out[f"{phase}_device_window"] = window if devices else None


def canonical(row: dict[str, Any], tags: dict[str, Any], det: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis' columns for one run (see the module docstring and :mod:`green_mlops.analysis.runs`)."""
    summaries: Mapping[str, Any] = det.get("summaries", {})
    util: Mapping[str, Any] = det.get("utilisation", {})
    name = row.get("mlflow.runName") if isinstance(row.get("mlflow.runName"), str) else row.get("run_id")
    model = next((row[k] for k in ("arch", "model") if isinstance(row.get(k), str) and row[k]), name)
    inf_stage = next((s for s in INFERENCE_STAGES if first(row, [f"energy/{s}_J"]) is not None), None)
    fit = summaries.get("fit") or {}
    prov = _provenance_from_summary(fit) or _provenance_from_tags(tags)
    ram_gb = first(tags, ["green_mlops.hw.ram_gb"])
    out: dict[str, Any] = {
        "run_id": row.get("run_id"), "run_name": name, "model": model, "hardware": hardware_label(tags),
        "provenance": provenance_text(prov), "accuracy": first(row, ACCURACY_KEYS),
        "train_energy_J": first(row, TRAIN_ENERGY_KEYS), "train_time_s": first(row, ["time/fit_s"]),
        "train_samples": _samples(row, det, "train"),
        "inference_stage": inf_stage,
        "inference_energy_J": first(row, [f"energy/{inf_stage}_J"]) if inf_stage else None,
        "inference_time_s": first(row, [f"time/{inf_stage}_s"]) if inf_stage else None,
        "inference_samples": _samples(row, det, inf_stage) if inf_stage else None,
        "ram_bytes": ram_gb * 1e9 if ram_gb else None,
        "train_steps_net_J": first(row, ["energy/net_J"]),
    }
    for d in DOMAINS:
        out[f"method_{d}"] = tags.get(f"green_mlops.method.{d}")
        out[f"provenance_{d}"] = tags.get(f"green_mlops.provenance.{d}")
    for phase, stage in (("train", "fit"), ("inference", inf_stage)):
        _phase(out, row, phase, stage, summaries.get(stage) if stage else None)
        u = util.get(stage, {}) if stage else {}
        out[f"{phase}_util"] = u.get("util")
        out[f"{phase}_util_device"] = u.get("util_device")
        out[f"{phase}_gpu_mem_util"] = u.get("gpu_mem_util")
    for d in (*DOMAINS, "total"):
        out[idle_col(d)] = first(row, [idle_metric(d)])
        if out[idle_col(d)] is None and d != "total":
            out[idle_col(d)] = _idle_W(fit, d)
    devices = [d for d in DOMAINS if out[device_col("train", d)] is not None] or list(DOMAINS)
    if out[idle_col("total")] is None and all(out[idle_col(d)] is not None for d in devices):
        out[idle_col("total")] = sum(out[idle_col(d)] for d in devices)
    for phase in ("train", "inference"):
        n, s = out[net_col(phase)], out[f"{phase}_samples"]
        out[f"{phase}_net_per_sample_J"] = n / s if n is not None and s else None
    return out


def _samples(row: Mapping[str, Any], det: Mapping[str, Any], stage: str) -> float | None:
    """Samples of a stage: a logged ``samples/{stage}`` metric, else loop energy over energy per sample."""
    logged = first(row, [f"samples/{stage}"])
    if logged is not None:
        return logged
    if stage == "train":
        loop_J, per = det.get("train_loop_J"), first(row, ["energy_per_sample_train_J"])
    else:
        summary = det.get("summaries", {}).get(stage) or {}
        per = first(summary.get("metrics", {}), ["energy_per_sample_inference_J"])
        if per is None and sum(first(row, [f"energy/{s}_J"]) is not None for s in INFERENCE_STAGES) == 1:
            per = first(row, ["energy_per_sample_inference_J"])  # only one inference stage: the metric is its
        loop_J = det.get("epoch_J", {}).get(stage)
        if loop_J is None:
            loop_J = first(row, [f"energy/{stage}_epoch_J"])
    if loop_J is None or not per or per <= 0:
        return None
    return float(round(loop_J / per))
