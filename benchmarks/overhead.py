"""What the EnergyCallback costs a training run, resolved to about 1 % (issue #3).

The workload (``benchmarks/workload.py``): ResNet18 on CIFAR-shaped batches of 128 under Lightning.
Set-ups, run as many short fits in one process, interleaved in rounds whose order alternates
(A B C, C B A, A B C, ...) so that slow drifts of clocks and temperature cancel:

  bare          no logger, no callback
  energy        EnergyCallback logging every step to an MLFlowLogger on a SQLite store
  energy-nolog  EnergyCallback, no logger (the meter and step attribution alone)
  energy-http   EnergyCallback logging every step through an MLflow tracking server (--server)
  lightning     no callback; the module self.log()s five metrics every step to an MLFlowLogger (SQLite)

Each round gives every set-up's throughput ratio to bare in that same round (paired, so drift
between rounds cancels); the report is the median ratio with a bootstrap 95 % confidence interval.
Beside it, the training (main) thread's CPU time per step, which a shared VM disturbs far less than
wall time, and the difference to bare: what the set-up adds to the thread that drives the GPU.
Set-up costs (MLflow run creation, the delivery process start) happen before the timed steps.

    PYTHONPATH=. python3 benchmarks/overhead.py [--rounds 12] [--steps 300] [--kinds bare,energy,lightning]
    PYTHONPATH=. python3 benchmarks/overhead.py --accelerator cpu --steps 5 --rounds 1   # smoke run

Prints the table last; writes details to $OUT/overhead.json (default ``bench_out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("bare", "energy", "energy-nolog", "energy-http", "lightning")
BOOTSTRAP_RESAMPLES = 10_000
TARGET = 0.99  # issue #3: throughput with the callback ≥ 0.99 of bare


def round_order(kinds: list[str], r: int) -> list[str]:
    """Round r's order: as given on even rounds, reversed on odd ones (ABBA), so linear drift cancels in pairs."""
    return list(kinds) if r % 2 == 0 else list(reversed(kinds))


def median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float | None, float | None]:
    """Median with a percentile-bootstrap confidence interval (None, None with fewer than 3 values)."""
    med = float(statistics.median(values))
    if len(values) < 3 or len(set(values)) == 1:
        return med, None, None
    from scipy.stats import bootstrap

    res = bootstrap((np.asarray(values, dtype=float),), np.median, confidence_level=confidence,
                    n_resamples=BOOTSTRAP_RESAMPLES, method="percentile", random_state=np.random.default_rng(0))
    return med, float(res.confidence_interval.low), float(res.confidence_interval.high)


def parse_kinds(text: str, server: str | None) -> list[str]:
    """The set-ups asked for, checked before any training starts."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown set-up(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if "bare" not in kinds:
        raise SystemExit("--kinds must include bare: every ratio is against it")
    if len(set(kinds)) != len(kinds):
        raise SystemExit(f"--kinds names a set-up twice: {text}")
    if "energy-http" in kinds and not server:
        raise SystemExit("energy-http needs --server URI; start one first, e.g. "
                         "`mlflow server --backend-store-uri sqlite:////tmp/srv.db --port 5055` and pass "
                         "--server http://127.0.0.1:5055")
    return kinds


def one_fit(kind: str, args: argparse.Namespace, workdir: str, counter: Any) -> dict[str, Any]:
    """One timed fit of one set-up; its files (MLflow store, artifacts) go under ``workdir``."""
    from pytorch_lightning.loggers import MLFlowLogger

    from benchmarks.workload import CounterProbe, run_fit, wait_for_writers
    from green_mlops.lightning import EnergyCallback

    logger: Any = False
    if kind in ("energy", "lightning", "energy-http"):
        uri = args.server if kind == "energy-http" else f"sqlite:///{workdir}/mlflow.db"
        logger = MLFlowLogger(experiment_name=f"overhead-{kind}", tracking_uri=uri,
                              artifact_location=None if kind == "energy-http" else f"{workdir}/artifacts")
    callbacks: list[Any] = []
    cb = before = None
    probe_start = probe_stop = None
    if kind.startswith("energy"):
        cb = EnergyCallback()
        probe_stop, probe_start = CounterProbe(counter), CounterProbe(counter)
        callbacks = [probe_stop, cb, probe_start]  # brackets the callback's own meter window
        before = wait_for_writers(cb)
    res = run_fit(args.accelerator, args.steps, args.warmup, args.batch_size, logger=logger, callbacks=callbacks,
                  log_five=kind == "lightning", counter=counter, before_start=before, root_dir=workdir)
    row: dict[str, Any] = {"kind": kind, **res.as_dict()}
    if cb is not None and cb.summary.get("local"):
        domains = cb.summary["local"]["domains"]
        row["callback_gpu_J"] = domains.get("gpu", {}).get("energy_J")
        row["callback_total_J"] = cb.summary.get("energy_J")
        row["steps_logged"] = len(cb.steps)
        if probe_start is not None and probe_start.at_setup is not None and probe_stop.at_teardown is not None:
            row["counter_over_callback_window_J"] = probe_stop.at_teardown - probe_start.at_setup
    return row


def summarise(rows: list[dict[str, Any]], kinds: list[str]) -> dict[str, dict[str, Any]]:
    """Per set-up: throughput, paired ratios to bare, CPU per step and the difference to bare."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["kind"]] = row
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        pairs = [(rd[kind], rd["bare"]) for rd in by_round.values() if kind in rd and "bare" in rd]
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in pairs]
        cpu_diff = [a["main_thread_cpu_us"] - b["main_thread_cpu_us"] for a, b in pairs]
        rates = [r["steps_per_s"] for r in mine]
        s: dict[str, Any] = {
            "rounds": len(mine), "steps_per_s": rates, "steps_per_s_median": statistics.median(rates),
            "ratio_per_round": ratios, "ratio": median_ci(ratios),
            "main_thread_cpu_us": statistics.median(r["main_thread_cpu_us"] for r in mine),
            "main_thread_cpu_us_vs_bare": median_ci(cpu_diff),
            "process_cpu_us": statistics.median(r["process_cpu_us"] for r in mine),
            "children_cpu_us": statistics.median(r["children_cpu_us"] for r in mine),
        }
        joules = [r["gpu_J_timed"] / r["steps"] for r in mine if r.get("gpu_J_timed") is not None]
        s["gpu_J_per_step"] = statistics.median(joules) if joules else None
        errs = [100 * (r["callback_gpu_J"] / r["counter_over_callback_window_J"] - 1) for r in mine
                if r.get("callback_gpu_J") is not None and r.get("counter_over_callback_window_J")]
        s["callback_gpu_error_pct"] = errs or None
        s["verdict"] = verdict(s["ratio"])
        out[kind] = s
    return out


def verdict(ratio: tuple[float, float | None, float | None], target: float = TARGET) -> str:
    """Whether the ratio's confidence interval shows it at or above ``target``, below it, or cannot tell."""
    med, lo, hi = ratio
    if lo is None or hi is None:
        return "too few rounds for an interval"
    if lo >= target:
        return f"≥ {target} shown (95 % CI above it)"
    if hi < target:
        return f"below {target} (95 % CI under it)"
    return f"undecided: the 95 % CI straddles {target}; run more rounds"


def _ci(triple: tuple[float, float | None, float | None], fmt: str) -> str:
    med, lo, hi = triple
    return f"{med:{fmt}}" + (f" [{lo:{fmt}}, {hi:{fmt}}]" if lo is not None else "")


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The markdown table printed last."""
    head = ("| set-up | steps/s, median (min–max) | ratio to bare, median [95 % CI] | main-thread CPU µs/step "
            "| vs bare, µs [95 % CI] | process CPU µs/step | child processes CPU µs/step | GPU J/step "
            "| callback GPU J vs counter |")
    lines = [head, "|" + " --- |" * 9]
    for kind, s in summary.items():
        rates = s["steps_per_s"]
        err = s["callback_gpu_error_pct"]
        lines.append(
            f"| {kind} | {s['steps_per_s_median']:.1f} ({min(rates):.1f}–{max(rates):.1f}) | {_ci(s['ratio'], '.3f')} "
            f"| {s['main_thread_cpu_us']:.0f} | {_ci(s['main_thread_cpu_us_vs_bare'], '+.0f')} "
            f"| {s['process_cpu_us']:.0f} | {s['children_cpu_us']:.0f} "
            f"| {'n/a' if s['gpu_J_per_step'] is None else format(s['gpu_J_per_step'], '.2f')} "
            f"| {'—' if not err else f'{statistics.median(err):+.2f} % (median of {len(err)})'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="gpu", help="gpu (default) or cpu for a smoke run")
    p.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    p.add_argument("--steps", type=int, default=300, help="timed optimiser steps per fit (default 300)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 on GPU, 2 on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--prime-steps", type=int, default=None,
                   help="one untimed bare fit before round 0 (CUDA, cuDNN and allocator warm-up; default 50 on GPU)")
    p.add_argument("--kinds", default="bare,energy,lightning", help=f"comma-separated set-ups from {', '.join(KINDS)}")
    p.add_argument("--server", default=None, help="tracking server URI for energy-http")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="start no round that would end later than this after launch (default 540; 0: no limit)")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="folder for overhead.json ($OUT)")
    args = p.parse_args(argv)
    for name in ("rounds", "steps", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    gpu = args.accelerator != "cpu"
    args.warmup = args.warmup if args.warmup is not None else (30 if gpu else 2)
    args.prime_steps = args.prime_steps if args.prime_steps is not None else (50 if gpu else 0)
    if args.warmup < 1:
        p.error("--warmup must be ≥ 1")
    return args


def within_budget(t0: float, rounds_t0: float, rounds_done: int, budget_s: float) -> bool:
    """Whether one more round, as long as the mean round so far, ends within ``budget_s`` of ``t0`` (monotonic)."""
    now = time.monotonic()
    return budget_s <= 0 or now - t0 + (now - rounds_t0) / rounds_done <= budget_s


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_args(argv)
    kinds = parse_kinds(args.kinds, args.server)
    from benchmarks.workload import GpuCounter, prepare, run_fit

    prepare(args.accelerator)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="overhead-")
    counter = GpuCounter.open(args.accelerator)
    if args.prime_steps:
        run_fit(args.accelerator, args.prime_steps, args.warmup, args.batch_size, root_dir=workdir)
    rows: list[dict[str, Any]] = []
    started = time.time()
    rounds_t0 = time.monotonic()
    for r in range(args.rounds):
        if r and not within_budget(t0, rounds_t0, r, args.budget_s):
            print(f"stopping after {r} rounds: another would end past --budget-s {args.budget_s:g}", flush=True)
            break
        for kind in round_order(kinds, r):
            row = {"round": r, **one_fit(kind, args, workdir, counter)}
            rows.append(row)
            print(f"round {r:2d} {kind:12s} {row['steps_per_s']:7.1f} steps/s  main thread "
                  f"{row['main_thread_cpu_us']:7.0f} µs/step  children {row['children_cpu_us']:6.0f} µs/step", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    summary = summarise(rows, kinds)
    import torch

    info = {"device": torch.cuda.get_device_name() if args.accelerator != "cpu" else platform.processor() or "cpu",
            "python": platform.python_version(), "torch": torch.__version__, "command": " ".join(sys.argv),
            "date": time.strftime("%Y-%m-%d"), "wall_s": time.time() - started, "args": vars(args)}
    text = table(summary)
    (out / "overhead.json").write_text(json.dumps({**info, "summary": summary, "details": rows}, indent=1))
    (out / "overhead.md").write_text(text + "\n")
    print(f"\n{len({r['round'] for r in rows})} rounds × {args.steps} timed steps, order alternating; ratios paired within rounds")
    for kind, s in summary.items():
        if kind != "bare":
            print(f"  {kind}: ratio {_ci(s['ratio'], '.3f')}: {s['verdict']}")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
