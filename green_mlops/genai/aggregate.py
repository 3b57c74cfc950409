"""Per rate level: throughput, latency, tokens, and energy per request, per output token, per second, at steady state.

Every figure of a level is over its steady window (the warm-up and the drain are reported apart):
requests are counted by the window estimator of :mod:`.window`, latencies over the requests sent in
the window. Failed requests stay in every count and their energy in the window's total
(``energy_per_ok_request_J`` counts the answered ones only). Energy is net of the idle baseline when
one was measured, else gross, and ``energy_basis`` says which. Where the load generator shares the
machine, the CPU energy is split between it and the server (:mod:`.cpu_share`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from green_mlops import names
from green_mlops.genai.cpu_share import CpuSpan, loadgen_share
from green_mlops.genai.model_info import model_metrics
from green_mlops.genai.record import LevelInfo, SweepRecord
from green_mlops.genai.saturation import Saturation, find_saturation
from green_mlops.genai.window import completed_in, served, served_tokens
from green_mlops.meter import DOMAINS, EnergyResult
from green_mlops.metrics.genai import energy_per_output_token, energy_per_request

#: A level is unsustainable when more than this share of its requests failed.
MAX_FAILED_SHARE = 0.05
#: ... or answers came back slower than this fraction of the rate they were sent at (the server fell behind).
MIN_COMPLETION_RATIO = 0.8
#: ... or the median latency of its last third exceeds its first third's by this factor, and by more than one
#: arrival interval (a queue built up).
MAX_LATENCY_GROWTH = 2.0
#: The phases of a level whose energy is metered: the steady window is the measure, the others are reported apart.
PHASES = ("warmup", "steady", "drain")
ESTIMATOR = "service-overlap share: E_net(W) / Σ_i |[sent_i, end_i] ∩ W| / (end_i − sent_i)"


@dataclass
class SweepAnalysis:
    """A sweep's tables: one row per level, one row per level and device, and the saturation finding."""

    levels: pd.DataFrame
    devices: pd.DataFrame
    saturation: Saturation


def aggregate_sweep(record: SweepRecord, energies: dict[int, dict[str, EnergyResult]] | None = None,
            *, same_machine: bool = False) -> SweepAnalysis:
    """Aggregate every level of ``record``; ``energies`` maps a level's index to its energy per phase (None: no
    meter); ``same_machine``: the load generator ran where the energy was metered, so its CPU share is split off."""
    rows, devices = [], []
    model = model_metrics(_param(record.params, "model_parameters"), _param(record.params, "model_bytes"),
                          _param(record.params, "memory_bytes"))
    idle_cpu = CpuSpan(**record.idle_cpu) if record.idle_cpu else None
    for level in record.levels:
        requests = record.requests[record.requests["level"] == level.index]
        phases = (energies or {}).get(level.index) or {}
        row = level_row(level, requests, phases)
        if same_machine:
            row.update(cpu_split(level, row, idle_cpu))
        rows.append({**row, **model})
        if phases.get("steady") is not None:
            devices.extend(device_rows(level, phases["steady"], row["served_requests"]))
    levels = pd.DataFrame(rows)
    return SweepAnalysis(levels, pd.DataFrame(devices), find_saturation(levels))


def level_row(level: LevelInfo, requests: pd.DataFrame, phases: dict[str, EnergyResult]) -> dict[str, Any]:
    """Every number of one level over its steady window, and the warm-up and drain apart; NaN energy unmetered."""
    w0, w1 = level.window
    steady = _sent_in(requests, w0, w1)
    ok = steady[steady["ok"].astype(bool)]
    failed = steady[~steady["ok"].astype(bool)]
    kinds = failed["error_kind"].fillna("unknown").value_counts()
    duration = level.duration_s
    n_served = served(requests, w0, w1)
    n_ok = served(requests[requests["ok"].astype(bool)], w0, w1)
    tokens = served_tokens(requests, w0, w1)
    completed = completed_in(requests, w0, w1)
    sustainable, why = judge(steady, level.rate_rps, completed=completed, duration_s=duration)
    sources = sorted(set(requests["tokens_source"].dropna()))
    row: dict[str, Any] = {
        "level": level.index, names.RATE: level.rate_rps, "requests": len(steady), "ok": len(ok),
        "failed": len(failed), "failures": ", ".join(f"{k}: {v}" for k, v in kinds.items()),
        "served_requests": n_served, "completed_in_window": completed,
        "start": level.start, "steady_start": w0, "steady_end": w1, "end": level.end,
        "duration_s": duration, "warmup_s": w0 - level.start, "drain_s": level.end - w1, "level_s": level.end - level.start,
        "warmup_requests": int((requests["scheduled"] < w0).sum()),
        "drain_completed": int((requests["end"] >= w1).sum()),
        "warmup_how": level.warmup_how, "steady_how": level.steady_how,
        "arrival_rps": _per_s(len(steady), duration), "completion_rps": _per_s(completed, duration),
        "served_rps": _per_s(n_served, duration),
        "send_lag_p95_s": _pct(requests["send_lag_s"], 95), "send_lag_max_s": _max(requests["send_lag_s"]),
        "sustainable": sustainable, "unsustainable_reason": why,
        "output_tokens": tokens, "prompt_tokens": _sum_or_nan(steady["prompt_tokens"]),
        "average_output_token_length": float(ok["output_tokens"].mean()) if len(ok) else math.nan,
        "tokens_source": "+".join(sources), "output_tokens_per_s": _per_s(tokens, duration),
    }
    for name, column in (("latency", "latency_s"), ("ttft", "ttft_s")):
        values = ok[column]
        row[f"{name}_mean_s"] = float(values.mean()) if len(values) else math.nan
        for q in (50, 90, 99):
            row[f"{name}_p{q}_s"] = _pct(values, q)
    row["steady_over_latency"] = _ratio(duration, row["latency_p50_s"])
    row.update(energy_columns(phases.get("steady"), n_served, n_ok, tokens, duration))
    row[names.ENERGY_PER_COMPLETED_REQUEST] = _ratio(row["energy_J"], completed)
    for phase in ("warmup", "drain"):
        row[f"{phase}_energy_J"] = _basis_total(phases.get(phase))
    row["estimator"] = ESTIMATOR
    row["cache_hit_rate"] = math.nan if level.cache_hit_rate is None else level.cache_hit_rate
    row["cache_hit_rate_method"] = level.cache_hit_rate_method
    return row


def cpu_split(level: LevelInfo, row: dict[str, Any], idle: CpuSpan | None) -> dict[str, Any]:
    """The steady window's CPU energy split into the load generator's estimated share and the server's."""
    window = CpuSpan(**level.cpu) if level.cpu else None
    out: dict[str, Any] = {"loadgen_cpu_s": math.nan, "machine_busy_cpu_s": math.nan}
    if window is None:
        share, how = math.nan, "no CPU clocks recorded"
    else:
        share, how = loadgen_share(window, idle if row["energy_basis"] == "net of idle" else None)
        out.update(loadgen_cpu_s=window.process_s, machine_busy_cpu_s=window.busy_s)
    cpu = row.get("cpu_energy_J", math.nan)
    loadgen = share * cpu if not math.isnan(share) and not math.isnan(cpu) else math.nan
    out.update(loadgen_cpu_share=share, loadgen_cpu_method=f"estimated: {how}", loadgen_cpu_energy_J=loadgen,
               server_cpu_energy_J=cpu - loadgen, server_energy_J=row["energy_J"] - loadgen)
    out[names.SERVER_ENERGY_PER_REQUEST] = _ratio(out["server_energy_J"], row["served_requests"])
    return out


def energy_columns(energy: EnergyResult | None, requests: float, ok: float, tokens: float,
                   duration_s: float) -> dict[str, Any]:
    """Window energy, its split per domain, and the per-request, per-token and per-second ratios."""
    columns = ["energy_J", "gross_energy_J", "idle_power_W", *(f"{d}_energy_J" for d in DOMAINS),
               names.ENERGY_PER_REQUEST, names.ENERGY_PER_OK_REQUEST, names.ENERGY_PER_OUTPUT_TOKEN,
               names.ENERGY_PER_SECOND, *(names.device_energy_per_request(d) for d in DOMAINS)]
    if energy is None:
        return {"energy_basis": "not metered", **dict.fromkeys(columns, math.nan), "energy_final": False}
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
    out[names.ENERGY_PER_REQUEST] = _nan(energy_per_request(total, requests))  # the paper's one definition
    out[names.ENERGY_PER_OK_REQUEST] = _nan(energy_per_request(total, ok))
    out[names.ENERGY_PER_OUTPUT_TOKEN] = _nan(energy_per_output_token(total, tokens))
    out[names.ENERGY_PER_SECOND] = _ratio(total, duration_s)
    for d in DOMAINS:
        out[names.device_energy_per_request(d)] = _ratio(out[f"{d}_energy_J"], requests)
    out["energy_final"] = energy.final
    return out


def device_rows(level: LevelInfo, energy: EnergyResult, requests: float) -> list[dict[str, Any]]:
    """One row per device of one level's steady window: provenance, method, gross, idle power, net, per request."""
    rows = []
    for s in energy.sources:
        value = s.net_J if s.net_J is not None else s.energy_J
        rows.append({"level": level.index, names.RATE: level.rate_rps, "device": s.info.name, "domain": s.info.domain,
                     "provenance": s.info.provenance, "method": s.info.method, "gross_energy_J": s.energy_J,
                     "idle_power_W": math.nan if s.idle_power_W is None else s.idle_power_W,
                     "energy_J": value, names.ENERGY_PER_REQUEST: _ratio(value, requests)})
    return rows


def judge(requests: pd.DataFrame, rate: float, *, completed: int | None = None,
          duration_s: float | None = None) -> tuple[bool, str]:
    """Whether a level's rate was sustained, and if not, why: failures, a late client, or a server falling behind.

    ``requests`` are those sent in the window; given ``completed`` (answers in the window) and its
    ``duration_s``, "falling behind" compares completions and arrivals per second over the window.
    """
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
    if completed is not None and duration_s:
        sent_rate, done_rate = n / duration_s, completed / duration_s
    else:
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


def _sent_in(requests: pd.DataFrame, w0: float, w1: float) -> pd.DataFrame:
    """The requests scheduled inside the window (the steady requests)."""
    return requests[(requests["scheduled"] >= w0) & (requests["scheduled"] < w1)]


def _basis_total(energy: EnergyResult | None) -> float:
    if energy is None:
        return math.nan
    return energy.net_J if energy.net_J is not None else energy.total_J


def _per_s(count: float, duration_s: float) -> float:
    return count / duration_s if duration_s > 0 else math.nan


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
