"""What the EnergyCallback costs a training run, resolved to about 1 % (issues #3 and #16).

The workload (``benchmarks/workload.py``, ``--workload``): ResNet18 on CIFAR-shaped batches of 128 under
Lightning (about 13 ms a step on an H100), or an MLP for short steps where a per-step cost shows most:
``mlp`` (134 k parameters, the module self.log()s its loss every step, as in issue #16's measurement:
≥ 250 steps/s on an H200) and ``mlp-small`` (21 k parameters, no self.log: ≥ 1,000 steps/s).
Set-ups, run as many short fits in one process, interleaved in rounds whose order alternates
(A B C, C B A, A B C, ...) so that slow drifts of clocks and temperature cancel:

  bare          no logger, no callback
  logger        no callback; an MLFlowLogger on a SQLite store (the run a user who logs to MLflow has)
  callback      logger + a Lightning callback that does nothing: the floor any callback costs, since
                Lightning calls every callback's hooks (about seven a step) whether it overrides them or not
  energy        EnergyCallback logging every step to an MLFlowLogger on a SQLite store
  energy-nolog  EnergyCallback, no logger (the meter and step attribution alone)
  energy-http   EnergyCallback logging every step through an MLflow tracking server (--server)
  logger-http   no callback; an MLFlowLogger on that server (energy-http's baseline: with the mlp workload the
                module's own loss goes to the server every step, which costs the training thread far more
                than a SQLite write)
  lightning     no callback; the module self.log()s five metrics every step to an MLFlowLogger (SQLite)

Each round gives every set-up's throughput ratio to the baseline (``--baseline``, default bare) in that
same round (paired, so drift between rounds cancels); the report is the median ratio with a bootstrap
95 % confidence interval. Beside it, the training (main) thread's CPU time per step, which a shared VM
disturbs far less than wall time, and the difference to the baseline: what the set-up adds to the
thread that drives the GPU. Then what green_mlops itself spends per logged step (every step is logged):
the CPU time of its threads in the training process (sampler, step stream, writer) and of its helper
process (MLflow delivery), read per thread from Linux's schedstat. And the memory a set-up adds to a run:
each set-up once more in a fresh process (``--memory-rounds``), the training process's RSS plus its
child processes' USS at the end of the timed steps, minus the baseline's.
Set-up costs (MLflow run creation, the delivery process start) happen before the timed steps.

    PYTHONPATH=. python3 benchmarks/overhead.py [--rounds 12] [--steps 300] [--kinds bare,energy,lightning]
    PYTHONPATH=. python3 benchmarks/overhead.py --workload mlp --kinds logger,energy --baseline logger
    PYTHONPATH=. python3 benchmarks/overhead.py --accelerator cpu --steps 5 --rounds 1   # smoke run
    PYTHONPATH=. python3 benchmarks/overhead.py --merge call1/overhead.json call2/overhead.json --out pooled

``--merge`` pools the rounds of several calls (same workload, steps and baseline; each call's rounds stay
paired within themselves) into one summary: on a noisy machine one call's rounds give too wide an interval.

Prints the table last; writes details to $OUT/overhead.json (default ``bench_out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("bare", "logger", "callback", "energy", "energy-nolog", "energy-http", "logger-http", "lightning")
LOGGED = ("logger", "callback", "energy", "energy-http", "logger-http", "lightning")  # with an MLFlowLogger
HTTP = ("energy-http", "logger-http")  # set-ups logging to --server
STEPS = {"resnet18": 300, "mlp": 3000, "mlp-small": 6000}  # default timed steps: several seconds of each
ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_RESAMPLES = 10_000
TARGET = 0.99  # issue #3: throughput with the callback ≥ 0.99 of bare
TARGETS = {"resnet18": 0.995, "mlp": 0.99, "mlp-small": 0.98}  # issue #16, by workload


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


def parse_kinds(text: str, server: str | None, baseline: str = "bare") -> list[str]:
    """The set-ups asked for, checked before any training starts."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"unknown set-up(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    if baseline not in kinds:
        raise SystemExit(f"--kinds must include the baseline {baseline}: every ratio is against it")
    if len(set(kinds)) != len(kinds):
        raise SystemExit(f"--kinds names a set-up twice: {text}")
    http = [k for k in HTTP if k in kinds]
    if http and not server:
        raise SystemExit(f"{' and '.join(http)} {'needs' if len(http) == 1 else 'need'} --server URI; start one first, e.g. "
                         "`mlflow server --backend-store-uri sqlite:////tmp/srv.db --port 5055` and pass "
                         "--server http://127.0.0.1:5055")
    return kinds


def one_fit(kind: str, args: argparse.Namespace, workdir: str, counter: Any) -> dict[str, Any]:
    """One timed fit of one set-up; its files (MLflow store, artifacts) go under ``workdir``."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from benchmarks.workload import CounterProbe, run_fit, wait_for_writers
    from green_mlops.lightning import EnergyCallback

    logger: Any = False
    if kind in LOGGED:
        uri = args.server if kind in HTTP else f"sqlite:///{workdir}/mlflow.db"
        logger = MLFlowLogger(experiment_name=f"overhead-{kind}", tracking_uri=uri,
                              artifact_location=None if kind in HTTP else f"{workdir}/artifacts")
    cb = before = None
    # every set-up gets the two probes: Lightning calls each callback's hooks every step (tens of µs a step on
    # a slow CPU, even for hooks that do nothing), so only the EnergyCallback differs between set-ups
    probe_stop, probe_start = CounterProbe(counter), CounterProbe(counter)
    callbacks: list[Any] = [probe_stop, probe_start]
    if kind.startswith("energy"):
        cb = EnergyCallback()
        callbacks = [probe_stop, cb, probe_start]  # brackets the callback's own meter window
        before = wait_for_writers(cb)
    elif kind == "callback":
        callbacks = [probe_stop, pl.Callback(), probe_start]
    res = run_fit(args.accelerator, args.steps, args.warmup, args.batch_size, logger=logger, callbacks=callbacks,
                  log_five=kind == "lightning", counter=counter, before_start=before, root_dir=workdir,
                  workload=args.workload)
    row: dict[str, Any] = {"kind": kind, **res.as_dict()}
    green = res.green_cpu_us  # the sampler's cost is per second of run; the stream's and writer's per step
    row["green_sampler_us"] = green.get("green-mlops-sampler", 0.0)
    row["green_threads_us"] = sum(v for k, v in green.items() if k.startswith("green-mlops"))
    row["green_helpers_us"] = sum(v for k, v in green.items() if not k.startswith("green-mlops"))
    row["memory_mb"] = res.rss_mb_at_end + res.children_uss_mb  # the training process + its helpers' own pages
    if cb is not None and cb.summary.get("local"):
        domains = cb.summary["local"]["domains"]
        row["callback_gpu_J"] = domains.get("gpu", {}).get("energy_J")
        row["callback_total_J"] = cb.summary.get("energy_J")
        row["steps_logged"] = len(cb.steps)
        row["metrics_per_step"] = len(cb.steps[-1][2]) if cb.steps else 0
        if probe_start.at_setup is not None and probe_stop.at_teardown is not None:
            row["counter_over_callback_window_J"] = probe_stop.at_teardown - probe_start.at_setup
    return row


def memory_rows(kinds: list[str], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Each set-up once in a fresh interpreter (memory a process once held stays held): its fit's row."""
    rows = []
    for r in range(args.memory_rounds):
        for kind in round_order(kinds, r):
            result = out / f"overhead-memory-{kind}.json"
            result.unlink(missing_ok=True)
            argv = [a for a in sys.argv[1:]] if args.argv is None else list(args.argv)
            cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--memory-child", kind,
                   "--memory-result", str(result)]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
            proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode or not result.exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                rows.append({"round": r, "kind": kind, "error": f"exit {proc.returncode}: {tail[0][:300]}"})
                continue
            rows.append({"round": r, **json.loads(result.read_text())})
            result.unlink()
            print(f"memory {r} {kind:12s} {rows[-1]['memory_mb']:7.0f} MB (RSS {rows[-1]['rss_mb_at_end']:.0f} "
                  f"+ child processes' USS {rows[-1]['children_uss_mb']:.0f})", flush=True)
    return rows


def memory_child(args: argparse.Namespace) -> int:
    """The --memory-child process: one fit of one set-up, its row to --memory-result."""
    from benchmarks.workload import prepare

    prepare(args.accelerator)
    workdir = tempfile.mkdtemp(prefix="overhead-memory-")
    row = one_fit(args.memory_child, args, workdir, None)
    keep = ("kind", "rss_mb_at_end", "children_uss_mb", "children", "memory_mb", "peak_rss_mb", "steps_per_s")
    Path(args.memory_result).write_text(json.dumps({k: row[k] for k in keep if k in row}))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def base_of(kind: str, kinds: list[str], baseline: str) -> str:
    """What ``kind`` is compared with: energy-http with logger-http when both ran (both log to the server), else
    the baseline."""
    return "logger-http" if kind == "energy-http" and "logger-http" in kinds else baseline


def summarise(rows: list[dict[str, Any]], kinds: list[str], baseline: str = "bare",
              memory: list[dict[str, Any]] = ()) -> dict[str, dict[str, Any]]:  # type: ignore[assignment]
    """Per set-up: throughput, paired ratios to the baseline, CPU per step and the difference, memory added."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["kind"]] = row
    mem = {k: [m["memory_mb"] for m in memory if m["kind"] == k and "memory_mb" in m] for k in kinds}
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        base = base_of(kind, kinds, baseline)
        base_mem = statistics.median(mem[base]) if mem.get(base) else None
        mine = [r for r in rows if r["kind"] == kind]
        pairs = [(rd[kind], rd[base]) for rd in by_round.values() if kind in rd and base in rd]
        ratios = [a["steps_per_s"] / b["steps_per_s"] for a, b in pairs]
        cpu_diff = [a["main_thread_cpu_us"] - b["main_thread_cpu_us"] for a, b in pairs]
        rates = [r["steps_per_s"] for r in mine]
        s: dict[str, Any] = {
            "baseline": base, "rounds": len(mine), "steps_per_s": rates, "steps_per_s_median": statistics.median(rates),
            "ratio_per_round": ratios, "ratio": median_ci(ratios),
            "main_thread_cpu_us": statistics.median(r["main_thread_cpu_us"] for r in mine),
            "main_thread_cpu_us_vs_baseline": median_ci(cpu_diff),
            "process_cpu_us": statistics.median(r["process_cpu_us"] for r in mine),
            "children_cpu_us": statistics.median(r["children_cpu_us"] for r in mine),
            "green_sampler_us": statistics.median(r["green_sampler_us"] for r in mine),
            "green_threads_us": statistics.median(r["green_threads_us"] for r in mine),
            "green_helpers_us": statistics.median(r["green_helpers_us"] for r in mine),
            "green_us": statistics.median(r["green_threads_us"] + r["green_helpers_us"] for r in mine),
            "memory_mb": statistics.median(mem[kind]) if mem.get(kind) else None,
        }
        s["memory_added_mb"] = (s["memory_mb"] - base_mem) if s["memory_mb"] is not None and base_mem else None
        joules = [r["gpu_J_timed"] / r["steps"] for r in mine if r.get("gpu_J_timed") is not None]
        s["gpu_J_per_step"] = statistics.median(joules) if joules else None
        errs = [100 * (r["callback_gpu_J"] / r["counter_over_callback_window_J"] - 1) for r in mine
                if r.get("callback_gpu_J") is not None and r.get("counter_over_callback_window_J")]
        s["callback_gpu_error_pct"] = errs or None
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


def table(summary: dict[str, dict[str, Any]], baseline: str = "bare") -> str:
    """The markdown table printed last."""
    head = (f"| set-up | steps/s, median (min–max) | ratio to {baseline}, median [95 % CI] | main-thread CPU µs/step "
            f"| vs {baseline}, µs [95 % CI] | green_mlops CPU µs per logged step: sampler + stream & writer + delivery "
            "process = all "
            f"| memory MB (RSS + helpers' USS) | added vs {baseline}, MB | process CPU µs/step "
            "| child processes CPU µs/step | GPU J/step | callback GPU J vs counter |")
    lines = [head, "|" + " --- |" * 12]
    for kind, s in summary.items():
        rates = s["steps_per_s"]
        err = s["callback_gpu_error_pct"]
        green = (f"{s['green_sampler_us']:.1f} + {s['green_threads_us'] - s['green_sampler_us']:.1f} + "
                 f"{s['green_helpers_us']:.1f} = {s['green_us']:.1f}" if s["green_us"] else "—")
        mem = "n/a" if s["memory_mb"] is None else f"{s['memory_mb']:.0f}"
        if s["baseline"] != baseline:
            kind = f"{kind} (vs {s['baseline']})"
        added = "n/a" if s["memory_added_mb"] is None else f"{s['memory_added_mb']:+.0f}"
        lines.append(
            f"| {kind} | {s['steps_per_s_median']:.1f} ({min(rates):.1f}–{max(rates):.1f}) | {_ci(s['ratio'], '.3f')} "
            f"| {s['main_thread_cpu_us']:.0f} | {_ci(s['main_thread_cpu_us_vs_baseline'], '+.0f')} | {green} "
            f"| {mem} | {added} | {s['process_cpu_us']:.0f} | {s['children_cpu_us']:.0f} "
            f"| {'n/a' if s['gpu_J_per_step'] is None else format(s['gpu_J_per_step'], '.2f')} "
            f"| {'—' if not err else f'{statistics.median(err):+.2f} % (median of {len(err)})'} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="gpu", help="gpu (default) or cpu for a smoke run")
    p.add_argument("--workload", default="resnet18", choices=sorted(STEPS),
                   help="resnet18 (default; ~13 ms steps), mlp (≥ 250 steps/s on an H200), mlp-small (≥ 1,000)")
    p.add_argument("--rounds", type=int, default=12, help="interleaved rounds (default 12)")
    p.add_argument("--steps", type=int, default=None,
                   help="timed optimiser steps per fit (default 300 for resnet18, 3000 for mlp, 6000 for mlp-small)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 on GPU, 2 on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--prime-steps", type=int, default=None,
                   help="one untimed bare fit before round 0 (CUDA, cuDNN and allocator warm-up; default 50 on GPU)")
    p.add_argument("--kinds", default="bare,energy,lightning", help=f"comma-separated set-ups from {', '.join(KINDS)}")
    p.add_argument("--baseline", default="bare", choices=KINDS,
                   help="the set-up ratios, CPU and memory are compared with (default bare; logger: a run that "
                        "already logs to MLflow)")
    p.add_argument("--memory-rounds", type=int, default=1,
                   help="each set-up this many times more in a fresh process, for memory (default 1; 0: none)")
    p.add_argument("--server", default=None, help="tracking server URI for energy-http and logger-http")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="start no round that would end later than this after launch (default 540; 0: no limit)")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="folder for overhead.json ($OUT)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="pool the rounds of earlier calls' overhead.json files into one summary in --out; no training")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--memory-result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    args.steps = args.steps if args.steps is not None else STEPS[args.workload]
    for name in ("rounds", "steps", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    if args.memory_rounds < 0:
        p.error("--memory-rounds must be ≥ 0")
    gpu = args.accelerator != "cpu"
    args.warmup = args.warmup if args.warmup is not None else (30 if gpu else 2)
    args.prime_steps = args.prime_steps if args.prime_steps is not None else (50 if gpu else 0)
    if args.warmup < 1:
        p.error("--warmup must be ≥ 1")
    return args


def interleaved(kinds: list[str], rounds: int, budget_s: float, t0: float,
                fit: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """``fit(kind)`` for every kind in each round, in alternating order, while another round fits in ``budget_s``
    of ``t0`` (monotonic); each row gets its round."""
    rows: list[dict[str, Any]] = []
    rounds_t0 = time.monotonic()
    for r in range(rounds):
        if r and not within_budget(t0, rounds_t0, r, budget_s):
            print(f"stopping after {r} rounds: another would end past --budget-s {budget_s:g}", flush=True)
            break
        for kind in round_order(kinds, r):
            print(f"round {r:2d} ", end="", flush=True)
            rows.append({"round": r, **fit(kind)})
    return rows


def within_budget(t0: float, rounds_t0: float, rounds_done: int, budget_s: float) -> bool:
    """Whether one more round, as long as the mean round so far, ends within ``budget_s`` of ``t0`` (monotonic)."""
    now = time.monotonic()
    return budget_s <= 0 or now - t0 + (now - rounds_t0) / rounds_done <= budget_s


def merge(paths: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """The rounds and memory rows of several calls' overhead.json, rounds renumbered per call so pairs stay within
    a call; refuses files of different workloads, step counts or baselines, whose ratios do not pool."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    keys = {(d["args"]["workload"], d["args"]["steps"], d["args"]["baseline"], d["args"]["accelerator"]) for d in docs}
    if len(keys) > 1:
        raise SystemExit(f"--merge: these calls differ in workload, steps, baseline or accelerator: {sorted(keys)}")
    rows = [{**r, "round": i * 100_000 + r["round"], "call": p} for i, (p, d) in enumerate(zip(paths, docs))
            for r in d["details"]]
    memory = [m for d in docs for m in d.get("memory", [])]
    kinds = list(dict.fromkeys(k for d in docs for k in d["summary"]))
    info = {**{k: v for k, v in docs[0].items() if k not in ("summary", "details", "memory")},
            "command": " ".join(sys.argv), "merged": paths, "date": sorted({d["date"] for d in docs}),
            "wall_s": sum(d["wall_s"] for d in docs)}
    return info, rows, memory, kinds


def report(out: Path, info: dict[str, Any], rows: list[dict[str, Any]], memory: list[dict[str, Any]],
           kinds: list[str]) -> None:
    """Summarise, write overhead.json/.md to ``out`` and print the verdicts, then the table last."""
    workload, baseline = info["args"]["workload"], info["args"]["baseline"]
    summary = summarise(rows, kinds, baseline, memory)
    text = table(summary, baseline)
    (out / "overhead.json").write_text(json.dumps({**info, "summary": summary, "details": rows, "memory": memory},
                                                  indent=1))
    (out / "overhead.md").write_text(text + "\n")
    print(f"\n{workload}: {len({r['round'] for r in rows})} rounds × {info['args']['steps']} timed steps, order "
          f"alternating; ratios paired within rounds, against {baseline}")
    for kind, s in summary.items():
        if kind != baseline:
            print(f"  {kind}: ratio to {s['baseline']} {_ci(s['ratio'], '.3f')}: {verdict(s['ratio'], info['target'])}")
    print()
    print(text)


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    if args.merge:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report(Path(args.out), *merge(args.merge))
        return 0
    kinds = parse_kinds(args.kinds, args.server, args.baseline)
    from benchmarks.workload import GpuCounter, prepare, run_fit

    prepare(args.accelerator)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="overhead-")
    counter = GpuCounter.open(args.accelerator)
    if args.prime_steps:
        run_fit(args.accelerator, args.prime_steps, args.warmup, args.batch_size, root_dir=workdir,
                workload=args.workload)
    started = time.time()

    def fit(kind: str) -> dict[str, Any]:
        row = one_fit(kind, args, workdir, counter)
        print(f"{kind:12s} {row['steps_per_s']:7.1f} steps/s  main thread {row['main_thread_cpu_us']:7.0f} µs/step  "
              f"green_mlops {row['green_threads_us']:6.1f} + {row['green_helpers_us']:6.1f} µs/step", flush=True)
        return row

    rows = interleaved(kinds, args.rounds, args.budget_s, t0, fit)
    shutil.rmtree(workdir, ignore_errors=True)
    memory = memory_rows(kinds, args, out)
    import torch

    info = {"device": torch.cuda.get_device_name() if args.accelerator != "cpu" else platform.processor() or "cpu",
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "wall_s": time.time() - started,
            "args": {k: v for k, v in vars(args).items() if k != "argv"}, "target": TARGETS[args.workload]}
    report(out, info, rows, memory, kinds)
    return 0

if __name__ == "__main__":
    sys.exit(main())
