"""Per rate level: throughput, latency percentiles, tokens, and energy per request, per output token, per second.

Failed requests stay in every count and their energy in the level's total: energy per request divides
the level's energy by all requests sent (``energy_per_ok_request_J`` by the answered ones only).
Energy is net of the idle baseline when one was measured, else gross, and ``energy_basis`` says which.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from green_mlops.genai.model_info import model_metrics
from green_mlops.genai.record import LevelInfo, SweepRecord
from green_mlops.genai.saturation import Saturation, find_saturation
from green_mlops.meter import DOMAINS, EnergyResult
from green_mlops.metrics.genai import energy_per_output_token, energy_per_request

#: A level is unsustainable when more than this share of its requests failed.
MAX_FAILED_SHARE = 0.05
#: ... or answers came back slower than this fraction of the rate they were sent at (the server fell behind).
MIN_COMPLETION_RATIO = 0.8
#: ... or the median latency of its last third exceeds its first third's by this factor, and by more than one
#: arrival interval (a queue built up).
MAX_LATENCY_GROWTH = 2.0


@dataclass
class SweepAnalysis:
    """A sweep's tables: one row per level, one row per level and device, and the saturation finding."""

    levels: pd.DataFrame
    devices: pd.DataFrame
    saturation: Saturation


def aggregate_sweep(record: SweepRecord, energies: dict[int, EnergyResult] | None = None) -> SweepAnalysis:
    """Aggregate every level of ``record``; ``energies`` maps a level's index to its energy (None: no meter)."""
    rows, devices = [], []
    model = model_metrics(_param(record.params, "model_parameters"), _param(record.params, "model_bytes"),
                          _param(record.params, "memory_bytes"))
    for level in record.levels:
        requests = record.requests[record.requests["level"] == level.index]
        energy = (energies or {}).get(level.index)
        rows.append({**level_row(level, requests, energy), **model})
        if energy is not None:
            devices.extend(device_rows(level, energy, len(requests)))
    levels = pd.DataFrame(rows)
    return SweepAnalysis(levels, pd.DataFrame(devices), find_saturation(levels))


def level_row(level: LevelInfo, requests: pd.DataFrame, energy: EnergyResult | None) -> dict[str, Any]:
    """Every number of one level; energy columns are NaN when nothing was metered."""
    n = len(requests)
    ok = requests[requests["ok"].astype(bool)]
    failed = requests[~requests["ok"].astype(bool)]
    kinds = failed["error_kind"].fillna("unknown").value_counts()
    sustainable, why = judge(requests, level.rate_rps)
    duration = level.duration_s
    tokens = int(requests["output_tokens"].sum())
    sources = sorted(set(requests["tokens_source"].dropna()))
    row: dict[str, Any] = {
        "level": level.index, "rate_rps": level.rate_rps, "requests": n, "ok": len(ok), "failed": len(failed),
        "failures": ", ".join(f"{k}: {v}" for k, v in kinds.items()),
        "start": level.start, "end": level.end, "duration_s": duration, "load_s": level.load_end - level.start,
        "drain_s": level.end - level.load_end,
        "arrival_rps": _span_rate(requests["sent"]), "completion_rps": _span_rate(ok["end"]),
        "send_lag_p95_s": _pct(requests["send_lag_s"], 95), "send_lag_max_s": _max(requests["send_lag_s"]),
        "sustainable": sustainable, "unsustainable_reason": why,
        "output_tokens": tokens, "prompt_tokens": _sum_or_nan(requests["prompt_tokens"]),
        "average_output_token_length": float(ok["output_tokens"].mean()) if len(ok) else math.nan,
        "tokens_source": "+".join(sources), "output_tokens_per_s": tokens / duration if duration > 0 else math.nan,
    }
    for name, column in (("latency", "latency_s"), ("ttft", "ttft_s")):
        values = ok[column]
        row[f"{name}_mean_s"] = float(values.mean()) if len(values) else math.nan
        for q in (50, 90, 99):
            row[f"{name}_p{q}_s"] = _pct(values, q)
    row.update(energy_columns(energy, n, len(ok), tokens, duration))
    row["cache_hit_rate"] = math.nan if level.cache_hit_rate is None else level.cache_hit_rate
    row["cache_hit_rate_method"] = level.cache_hit_rate_method
    return row


def energy_columns(energy: EnergyResult | None, requests: int, ok: int, tokens: int,
                   duration_s: float) -> dict[str, Any]:
    """Level energy, its split per domain, and the per-request, per-token and per-second ratios."""
    names = ["energy_J", "gross_energy_J", "idle_power_W", *(f"{d}_energy_J" for d in DOMAINS),
             "energy_per_request_J", "energy_per_ok_request_J", "energy_per_output_token_J", "energy_per_s_W",
             *(f"{d}_energy_per_request_J" for d in DOMAINS)]
    if energy is None:
        return {"energy_basis": "not metered", **dict.fromkeys(names, math.nan), "energy_final": False}
    net = energy.net_J is not None
    total = energy.net_J if net else energy.total_J
    out: dict[str, Any] = {
        "energy_basis": "net of idle" if net else "gross (no idle baseline)",
        "energy_J": total, "gross_energy_J": energy.total_J,
        "idle_power_W": sum(s.idle_power_W or 0.0 for s in energy.sources) if net else math.nan,
    }
    for d in DOMAINS:
        value = energy.domain_net_J(d) if net else energy.domain_J(d)
        out[f"{d}_energy_J"] = math.nan if value is None else value
    out["energy_per_request_J"] = _nan(energy_per_request(total, requests))  # the paper's one definition
    out["energy_per_ok_request_J"] = _nan(energy_per_request(total, ok))
    out["energy_per_output_token_J"] = _nan(energy_per_output_token(total, tokens))
    out["energy_per_s_W"] = _ratio(total, duration_s)
    for d in DOMAINS:
        out[f"{d}_energy_per_request_J"] = _ratio(out[f"{d}_energy_J"], requests)
    out["energy_final"] = energy.final
    return out


def device_rows(level: LevelInfo, energy: EnergyResult, requests: int) -> list[dict[str, Any]]:
    """One row per device of one level: provenance, method, gross, idle power, net, and per request."""
    rows = []
    for s in energy.sources:
        value = s.net_J if s.net_J is not None else s.energy_J
        rows.append({"level": level.index, "rate_rps": level.rate_rps, "device": s.info.name, "domain": s.info.domain,
                     "provenance": s.info.provenance, "method": s.info.method, "gross_energy_J": s.energy_J,
                     "idle_power_W": math.nan if s.idle_power_W is None else s.idle_power_W,
                     "energy_J": value, "energy_per_request_J": _ratio(value, requests)})
    return rows


def judge(requests: pd.DataFrame, rate: float) -> tuple[bool, str]:
    """Whether a level's rate was sustained, and if not, why: failures, a late client, or a server falling behind."""
    n = len(requests)
    if n == 0:
        return False, "no request was sent"
    ok = requests[requests["ok"].astype(bool)]
    reasons = []
    failed = n - len(ok)
    if failed > MAX_FAILED_SHARE * n:
        reasons.append(f"{failed} of {n} requests failed")
    lag = _pct(requests["send_lag_s"], 95)
    if lag > max(0.05, 0.25 / rate):
        reasons.append(f"the load generator sent late (95th percentile {lag:.3f} s behind schedule): "
                       f"this client cannot sustain {rate:g} rps")
    sent_rate, done_rate = _span_rate(requests["sent"]), _span_rate(ok["end"])
    if len(ok) >= 4 and done_rate < MIN_COMPLETION_RATIO * sent_rate:
        reasons.append(f"answers came back at {done_rate:.2f}/s against {sent_rate:.2f}/s sent: the server fell behind")
    if len(ok) >= 9:
        lat = ok.sort_values("sent")["latency_s"].to_numpy()
        third = len(lat) // 3
        first, last = float(np.median(lat[:third])), float(np.median(lat[-third:]))
        if first > 0 and last > MAX_LATENCY_GROWTH * first and last - first > 1.0 / rate:
            reasons.append(f"median latency grew from {first:.2f} s to {last:.2f} s within the level: requests queued")
    return not reasons, "; ".join(reasons)


def _param(params: dict[str, str], name: str) -> float | None:
    try:
        return float(params[name])
    except (KeyError, TypeError, ValueError):
        return None


def _span_rate(times: pd.Series) -> float:
    t = times.dropna().to_numpy(dtype=float)
    if len(t) < 2 or t.max() <= t.min():
        return math.nan
    return (len(t) - 1) / (t.max() - t.min())


def _pct(values: pd.Series, q: float) -> float:
    v = values.dropna().to_numpy(dtype=float)
    return float(np.percentile(v, q)) if len(v) else math.nan


def _max(values: pd.Series) -> float:
    v = values.dropna()
    return float(v.max()) if len(v) else math.nan


def _sum_or_nan(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.sum()) if len(v) else math.nan


def _nan(value: float | None) -> float:
    """A metric's "no number" (None) as the NaN the level tables carry."""
    return math.nan if value is None else value


def _ratio(a: float | None, b: float) -> float:
    if a is None or b is None or not b or (isinstance(a, float) and math.isnan(a)):
        return math.nan
    return a / b
