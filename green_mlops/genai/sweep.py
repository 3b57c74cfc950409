"""A request-rate sweep from start to finish: probe, idle baseline, one level per rate, energy, tables, MLflow.

``run_sweep`` meters this machine (the server runs here) or nothing (the server is remote: its
``green-mlops measure --trace`` is joined afterwards by ``join_server_trace``). Either way the same
analysis, files and MLflow runs come out.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from green_mlops.genai.aggregate import SweepAnalysis, aggregate_sweep
from green_mlops.genai.arrivals import arrival_stream
from green_mlops.genai.config import DEFAULT_EXPERIMENT, SweepConfig, is_this_machine
from green_mlops.genai.cpu_share import cpu_clock
from green_mlops.genai.energy import EnergySource, LocalEnergy, TraceEnergy
from green_mlops.genai.loadgen import LevelRun, PhasePlan, new_session, run_level
from green_mlops.genai.model_info import FLOPS_METHOD, accelerator_memory_bytes, local_model_size
from green_mlops.genai.probe import probe
from green_mlops.genai.prompts import PromptSet, load_prompts
from green_mlops.genai.record import LevelInfo, SweepRecord
from green_mlops.genai.report import console_table, plot_sweep, write_tables
from green_mlops.genai.server_metrics import CacheSnapshot, hit_rate, scrape
from green_mlops.meter import EnergyMeter, EnergyResult

SUMMARY_FILE = "summary.json"
TRACE_FILE = "trace.parquet"
#: The probe may wait this long at least: a server's first request can load, allocate or compile first.
PROBE_TIMEOUT_S = 180.0
#: Parameter saying whether the load generator ran on the endpoint's host (its CPU is then split off).
SAME_MACHINE = "loadgen_same_machine"


def _stderr(message: str) -> None:
    print(f"green-mlops genai: {message}", file=sys.stderr, flush=True)


@dataclass
class SweepResult:
    """Everything a sweep produced: its record, the analysis, the files written and the MLflow run id."""

    record: SweepRecord
    analysis: SweepAnalysis
    files: list[Path]
    run_id: str | None
    energy_description: str


@dataclass
class _Progress:
    """Filled while the sweep runs, so an interrupted sweep still reports the levels it finished."""

    levels: list[LevelRun] = field(default_factory=list)
    cache: dict[int, tuple[float | None, str]] = field(default_factory=dict)
    idle: tuple[float, float] | None = None
    idle_cpu: dict[str, float] | None = None
    dropped: list[str] = field(default_factory=list)


def run_sweep(config: SweepConfig, prompts: PromptSet | None = None, *, output: str | Path = "genai_results",
              meter: bool = True, experiment: str | None = DEFAULT_EXPERIMENT, tracking_uri: str | None = None,
              log: Callable[[str], None] = _stderr) -> SweepResult:
    """Run every rate level of ``config`` against its endpoint; meter this machine when ``meter`` is True."""
    prompts = prompts or load_prompts(None)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    energy_meter = EnergyMeter(interval=config.interval_s, name="genai sweep") if meter else None
    wall_offset = energy_meter.trace.wall_offset if energy_meter else time.time() - time.monotonic()
    progress = _Progress()
    notes: list[str] = []
    host = urlsplit(config.target().url).hostname or ""
    same_machine = is_this_machine(host)
    if energy_meter is not None and not same_machine:
        notes.append(f"endpoint host {host} is not this machine: the energy is this machine's, not the server's; "
                     "meter the server host instead (--meter none, then --from/--server-trace)")
        log(notes[-1])
    model = _model_params(config, local=energy_meter is not None)
    try:
        asyncio.run(_drive(config, prompts, energy_meter, progress, log))
    except KeyboardInterrupt:
        notes.append(f"interrupted after {len(progress.levels)} of {len(config.rates)} levels")
        log(notes[-1])
    finally:
        if energy_meter is not None and energy_meter.start_time is not None:
            energy_meter.stop()
    if progress.dropped:
        notes.append(f"server refused {', '.join(progress.dropped)}: sent without them "
                     "(top_k −1 and min_p 0 change nothing at temperature 0)")
    if energy_meter is not None and same_machine:
        notes.append("energy metered on this machine: it includes the load generator's own CPU use, whose "
                     "estimated share is reported apart (loadgen_cpu_energy_J, server_cpu_energy_J)")
    record = _record(config, prompts, progress, wall_offset, notes)
    record.params.update(model)
    record.params[SAME_MACHINE] = str(same_machine).lower()
    files = record.save(out)
    source: EnergySource | None = None
    if energy_meter is not None and energy_meter.start_time is not None:
        source = LocalEnergy(energy_meter)
        files.append(energy_meter.export_trace(out / TRACE_FILE))
    elif energy_meter is None:
        log(f"no energy metered here; join the server's trace later: green-mlops genai --from {out} "
            "--server-trace FILE")
    return _finish(record, source, out, files, experiment, tracking_uri, log)


def join_server_trace(results: str | Path, trace: str | Path, *, clock_offset_s: float = 0.0,
                      output: str | Path | None = None, experiment: str | None = DEFAULT_EXPERIMENT,
                      tracking_uri: str | None = None, log: Callable[[str], None] = _stderr) -> SweepResult:
    """Attach energy from a server-side trace to a sweep saved in ``results``, by wall-clock time."""
    record = SweepRecord.load(results)
    source = TraceEnergy(trace, idle=record.idle, clock_offset_s=clock_offset_s)
    if record.levels:
        source.span(record.levels[0].start, record.levels[-1].end, "the sweep")
    out = Path(output or results)
    record.params = {**record.params, "server_trace": str(trace), "clock_offset_s": f"{clock_offset_s:g}"}
    record.notes = [n for n in record.notes if not n.startswith(("energy metered on this machine", "endpoint host"))]
    files = record.save(out)
    return _finish(record, source, out, files, experiment, tracking_uri, log)


def _finish(record: SweepRecord, source: EnergySource | None, out: Path, files: list[Path],
            experiment: str | None, tracking_uri: str | None, log: Callable[[str], None]) -> SweepResult:
    energies = {lv.index: phase_energy(source, lv) for lv in record.levels} if source is not None else None
    idle = source.span(*record.idle, "idle") if source is not None and record.idle else None
    analysis = aggregate_sweep(record, energies, same_machine=record.params.get(SAME_MACHINE) == "true")
    description = source.description if source is not None else "not metered"
    files += write_tables(analysis, out)
    title = record.params.get("model", "")
    if not analysis.levels.empty:
        files += plot_sweep(analysis, out, title=Path(title).name or title)
    sample = next(iter(energies.values()))["steady"] if energies else None
    summary = {"params": record.params, "energy_source": description, "saturation": analysis.saturation.as_dict(),
               "idle": idle.as_dict() if idle is not None else None,
               "provenance": [s.info.as_dict() for s in sample.sources] if sample else [],
               "notes": record.notes}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    files.append(out / SUMMARY_FILE)
    if not analysis.levels.empty:
        log("\n" + console_table(analysis.levels))
    log(str(analysis.saturation))
    run_id = None
    if experiment and source is not None:
        from green_mlops.genai.tracking import log_sweep

        run_id = log_sweep(record, analysis, files, experiment=experiment, tracking_uri=tracking_uri,
                           energy_description=description, sample_energy=sample)
        log(f"MLflow run {run_id} in experiment {experiment!r}")
    return SweepResult(record, analysis, files, run_id, description)


async def _drive(config: SweepConfig, prompts: PromptSet, meter: EnergyMeter | None, progress: _Progress,
                 log: Callable[[str], None]) -> None:
    target = config.target()
    order = np.random.default_rng(config.seed).permutation(len(prompts)).tolist()
    async with new_session() as session:
        if config.probe:
            found = await probe(session, target, config.model, prompts.prompts[order[0]], config.sampling,
                                config.probe_timeout_s or max(config.timeout_s, PROBE_TIMEOUT_S))
            progress.dropped = found.dropped
            log(f"endpoint answers ({found.latency_s:.2f} s for a short request); output tokens from "
                f"{found.tokens_source}" + (f"; dropped {', '.join(found.dropped)}" if found.dropped else ""))
        metrics = await scrape(session, target.metrics_url)
        has_cache = metrics is not None and not metrics.empty
        if config.idle_s > 0:
            log(f"measuring idle for {config.idle_s:g} s (send nothing else to the server now)")
            before_idle = cpu_clock()
            if meter is not None:
                idle = meter.measure_idle(config.idle_s)
                assert idle is not None
                progress.idle = (idle.start, idle.end)
            else:
                t0 = time.monotonic()
                await asyncio.sleep(config.idle_s)
                progress.idle = (t0, time.monotonic())
            progress.idle_cpu = cpu_clock().since(before_idle).as_dict()
        if meter is not None:
            meter.start()
        sent = 0
        for index, rate in enumerate(config.rates):
            steady = config.duration_s if config.requests is None else config.requests / rate
            plan = PhasePlan(config.warmup_s, steady, config.steady_min_s, warmup_max_s=config.timeout_s,
                             warmup_min_s=config.warmup_min_s)
            log(f"level {index + 1}/{len(config.rates)}: {rate:g} rps; warm-up {config.warmup_rule()}, "
                f"steady window {config.steady_rule()}")
            before: CacheSnapshot | None = await scrape(session, target.metrics_url) if has_cache else None
            level = await run_level(session, target, config.model, prompts.prompts, order, index=index, rate=rate,
                                    arrivals=arrival_stream(rate, arrival=config.arrival, seed=config.seed + index),
                                    plan=plan, max_tokens=config.max_tokens, sampling=config.sampling,
                                    drop=progress.dropped, timeout_s=config.timeout_s, first_prompt=sent)
            after = await scrape(session, target.metrics_url) if has_cache else None
            progress.cache[index] = hit_rate(before, after)
            progress.levels.append(level)
            sent += len(level.records)
            log(f"level {index + 1}: warm-up {level.steady_start - level.start:.1f} s ({level.warmup_how}), steady "
                f"{level.load_end - level.steady_start:.1f} s ({level.steady_how}), drain "
                f"{level.end - level.load_end:.1f} s, {len(level.records)} requests")
            if config.cooldown_s and index + 1 < len(config.rates):
                await asyncio.sleep(config.cooldown_s)


def phase_energy(source: EnergySource, level: LevelInfo) -> dict[str, EnergyResult]:
    """A level's energy in each phase: warm-up, steady window (the measure) and drain."""
    w0, w1 = level.window
    name = f"{level.rate_rps:g} rps"
    return {"warmup": source.span(level.start, w0, f"{name} warm-up"), "steady": source.span(w0, w1, name),
            "drain": source.span(w1, level.end, f"{name} drain")}


def _model_params(config: SweepConfig, *, local: bool) -> dict[str, str]:
    """The model's size (given, or read from a local folder's safetensors) and the memory it sits in (local only)."""
    out: dict[str, str] = {}
    params, size, source = config.model_parameters, config.model_bytes, "given"
    if params is None or size is None:
        try:
            found = local_model_size(config.model)
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        if found is not None:
            params, size = params or found[0], size or found[1]
            source = f"safetensors headers in {config.model}"
    if params is not None:
        out.update(model_parameters=f"{params:.0f}", flops_method=FLOPS_METHOD)
    if size is not None:
        out["model_bytes"] = f"{size:.0f}"
    if params is not None or size is not None:
        out["model_size_source"] = source
    if local and size is not None:
        memory = accelerator_memory_bytes()
        if memory is not None:
            out.update(memory_bytes=str(memory[0]), memory_source=memory[1])
    return out


def _record(config: SweepConfig, prompts: PromptSet, progress: _Progress, wall_offset: float,
            notes: list[str]) -> SweepRecord:
    params = {**config.as_params(), "prompts": prompts.source, "prompts_sha256": prompts.sha256,
              "prompts_count": str(len(prompts)), "dropped_fields": ",".join(progress.dropped)}
    levels, rows = [], []
    for run in progress.levels:
        hits, method = progress.cache.get(run.index, (None, "not exposed by the server"))
        cpu = run.cpu["steady_end"].since(run.cpu["steady_start"]).as_dict() if "steady_start" in run.cpu else None
        levels.append(LevelInfo(run.index, run.rate, run.start + wall_offset, run.load_end + wall_offset,
                                run.end + wall_offset, hits, method, run.steady_start + wall_offset,
                                run.warmup_how, run.steady_how, cpu))
        rows.extend(r.as_row(wall_offset) for r in run.records)
    idle = (progress.idle[0] + wall_offset, progress.idle[1] + wall_offset) if progress.idle else None
    columns = ["level", "index", "phase", "prompt_index", "scheduled", "sent", "end", "first_token", "ok", "status",
               "error_kind", "error", "output_tokens", "prompt_tokens", "tokens_source", "stream_chunks",
               "finish_reason", "latency_s", "ttft_s", "send_lag_s"]
    return SweepRecord(params, idle, levels, pd.DataFrame(rows, columns=columns), notes, progress.idle_cpu)
