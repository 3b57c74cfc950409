"""green_mlops side by side with the energy tools users could pick instead (issue #7).

One workload (``benchmarks/workload.py``: ResNet18 on CIFAR-shaped batches of 128 under Lightning,
800 timed steps per run by default) under six configurations:

  bare           no energy tool, no logger (the reference)
  green_mlops    EnergyCallback, per-step metrics to MLflow (MLFlowLogger, SQLite store)
  lightning      Lightning's MLFlowLogger, the module self.log()s five metrics every step (SQLite)
  mlflow-system  MLflow system metrics at a 1 s interval (mlflow.start_run(log_system_metrics=True))
  codecarbon     CodeCarbon OfflineEmissionsTracker, measure_power_secs=1, offline (country set)
  zeus           Zeus ZeusMonitor, one begin_window/end_window around the fit

Every run is a fresh process (so peak RSS belongs to one configuration), run in interleaved rounds
whose order alternates (A B C ..., ... C B A) so drift hits all alike. Per configuration: median
throughput ratio to bare in the same round (min–max over rounds); the GPU energy the tool reports
against the NVML energy counter read independently around the tool's own window; whether CPU and
DRAM are reported and how; idle subtraction; step alignment; provenance; peak RSS. Also the
sampler's own CPU cost at 10 Hz and 100 Hz (an EnergyMeter alone, process CPU time / wall time).
A tool that fails to import or start is reported in the table with its error.

    PYTHONPATH=. python3 benchmarks/anchors.py [--rounds 3] [--steps 800] [--only bare,green_mlops,zeus]
    PYTHONPATH=. python3 benchmarks/anchors.py --accelerator cpu --steps 5 --rounds 1   # smoke run

Prints the markdown table last; writes $OUT/anchors.json and $OUT/anchors.md (default ``bench_out``).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.overhead import within_budget

CONFIGS = ("bare", "green_mlops", "lightning", "mlflow-system", "codecarbon", "zeus")
ROOT = Path(__file__).resolve().parents[1]
J_PER_KWH = 3.6e6
PACKAGES = ("torch", "pytorch-lightning", "mlflow", "codecarbon", "zeus", "nvidia-ml-py", "green-mlops")

# What each tool does by design, as its documentation and code say (checked against the run where possible).
IDLE = {"bare": "—", "green_mlops": "optional: idle_seconds → energy/net_J", "lightning": "—",
        "mlflow-system": "no", "codecarbon": "no", "zeus": "no"}
ALIGNED = {"bare": "—", "green_mlops": "yes: energy per global_step", "lightning": "—",
           "mlflow-system": "no: 1 s wall-clock samples", "codecarbon": "no: run total (tasks by hand)",
           "zeus": "no: windows placed by hand (one counter read each)"}
PROVENANCE = {"bare": "—", "green_mlops": "every number: measured/estimated + method", "lightning": "—",
              "mlflow-system": "no", "codecarbon": "method in its log only", "zeus": "no"}


# ------------------------------------------------------------------------------------------------
# The child: one configuration, one timed fit, one JSON result
# ------------------------------------------------------------------------------------------------

class ToolFailed(Exception):
    """A tool could not be imported or started: reported in the table, the benchmark goes on."""


TOOL_SECONDS: dict[str, float] = {}  # how long each tool call took (start, stop): kept in the result


def _tool(stage: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    except Exception as exc:  # any failure of a third-party tool is a result, not a crash
        raise ToolFailed(f"{stage}: {type(exc).__name__}: {exc}") from exc
    finally:
        TOOL_SECONDS[stage] = time.perf_counter() - t0


def _fit(ctx: dict[str, Any], **kw: Any) -> dict[str, Any]:
    from benchmarks.workload import run_fit

    a = ctx["args"]
    return run_fit(a.accelerator, a.steps, a.warmup, a.batch_size, counter=ctx["counter"], root_dir=ctx["tmp"],
                   **kw).as_dict()


def _domain(domains: dict[str, Any], name: str) -> str:
    d = domains.get(name)
    if not d:
        return "not reported"
    methods = ", ".join(d["methods"])
    return f"{d['energy_J']:.0f} J ({methods})"


def _read(ctx: dict[str, Any]) -> float | None:
    """The NVML energy counter now (J), if this machine has one."""
    return ctx["counter"].read_J() if ctx["counter"] is not None else None


def _span(window: list[float | None], fit: dict[str, Any]) -> float | None:
    """Counter energy over a tool's own window; the fit's counter energy where there is no window."""
    if window[0] is None or window[1] is None:
        return fit["gpu_J_fit"]
    return window[1] - window[0]


def run_bare(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"fit": _fit(ctx), "gpu_J": None, "cpu": "—", "dram": "—"}


def run_green_mlops(ctx: dict[str, Any]) -> dict[str, Any]:
    from pytorch_lightning.loggers import MLFlowLogger

    from benchmarks.workload import CounterProbe, wait_for_writers
    from green_mlops.lightning import EnergyCallback

    cb = _tool("start", lambda: EnergyCallback(idle_seconds=ctx["args"].idle_seconds))
    logger = MLFlowLogger(experiment_name="anchors-green_mlops", tracking_uri=ctx["store"],
                          artifact_location=f"{ctx['tmp']}/artifacts")
    stop_probe, start_probe = CounterProbe(ctx["counter"]), CounterProbe(ctx["counter"])
    fit = _fit(ctx, logger=logger, callbacks=[stop_probe, cb, start_probe], before_start=wait_for_writers(cb))
    local = cb.summary.get("local") or {}
    domains = local.get("domains", {})
    reference = None
    if start_probe.at_setup is not None and stop_probe.at_teardown is not None:
        reference = stop_probe.at_teardown - start_probe.at_setup
    idle = IDLE["green_mlops"]
    if local.get("net_J") is not None:
        idle = f"yes: {ctx['args'].idle_seconds:g} s baseline, net {local['net_J']:.0f} J"
    every = all(d.get("methods") for d in domains.values())
    return {"fit": fit, "gpu_J": domains.get("gpu", {}).get("energy_J"), "reference_J": reference,
            "reference": "counter read as the callback's meter starts and stops",
            "gpu_how": ", ".join(domains.get("gpu", {}).get("methods", [])) or "no GPU",
            "cpu": _domain(domains, "cpu"), "dram": _domain(domains, "dram"), "idle": idle,
            "aligned": f"yes: {len(cb.steps)} steps with energy at their global_step",
            "provenance": PROVENANCE["green_mlops"] if every else "missing on some domain",
            "total_J": cb.summary.get("energy_J")}


def run_lightning(ctx: dict[str, Any]) -> dict[str, Any]:
    from pytorch_lightning.loggers import MLFlowLogger

    logger = MLFlowLogger(experiment_name="anchors-lightning", tracking_uri=ctx["store"],
                          artifact_location=f"{ctx['tmp']}/artifacts")
    return {"fit": _fit(ctx, logger=logger, log_five=True), "gpu_J": None, "cpu": "—", "dram": "—"}


def run_mlflow_system(ctx: dict[str, Any]) -> dict[str, Any]:
    import mlflow

    def start() -> Any:
        mlflow.set_tracking_uri(ctx["store"])
        mlflow.set_system_metrics_sampling_interval(1)
        mlflow.set_system_metrics_samples_before_logging(1)
        experiment = mlflow.MlflowClient(ctx["store"]).create_experiment(
            "anchors-mlflow-system", artifact_location=f"{ctx['tmp']}/artifacts")
        return mlflow.start_run(experiment_id=experiment, log_system_metrics=True)

    run = _tool("start", start)
    try:
        fit = _fit(ctx)
    finally:
        mlflow.end_run()
    client = mlflow.MlflowClient(ctx["store"])
    metrics = client.get_run(run.info.run_id).data.metrics
    counter = ctx["counter"]
    gpu_keys = sorted(k for k in metrics if k.startswith("system/gpu_") and k.endswith("_power_usage_watts")
                      and (counter is None or k == f"system/gpu_{counter.index}_power_usage_watts"))
    gpu_J = None
    samples = 0
    how = "no GPU metric logged"
    for key in gpu_keys:  # MLflow logs power only: its energy is the mean logged power × the fit's time
        watts = [m.value for m in client.get_metric_history(run.info.run_id, key)]
        samples = max(samples, len(watts))
        gpu_J = (gpu_J or 0.0) + statistics.fmean(watts) * fit["fit_seconds"]
        how = f"nvmlDeviceGetPowerUsage (1 s average), {samples} samples; mean × fit time"
    return {"fit": fit, "gpu_J": gpu_J, "reference_J": fit["gpu_J_fit"], "reference": "counter around trainer.fit",
            "gpu_how": how,
            "cpu": "utilisation only", "dram": "memory use only"}


def _codecarbon_how(hardware: list[str], part: str) -> str:
    desc = [h for h in hardware if h.upper().startswith(part)]
    if not desc:
        return "not reported"
    measured = any("rapl" in d.lower() for d in desc)
    return f"{'measured' if measured else 'estimated'}: {', '.join(desc)}"


def run_codecarbon(ctx: dict[str, Any]) -> dict[str, Any]:
    a = ctx["args"]

    def start() -> Any:
        from codecarbon import OfflineEmissionsTracker

        gpus = [ctx["counter"].index] if ctx["counter"] else None  # the GPU that trains, as NVML numbers it
        tracker = OfflineEmissionsTracker(country_iso_code=a.country, measure_power_secs=1, log_level="error",
                                          output_dir=ctx["tmp"], allow_multiple_runs=True, gpu_ids=gpus)
        window[0] = _read(ctx)
        tracker.start()
        return tracker

    window: list[float | None] = [None, None]
    tracker = _tool("start", start)
    try:
        fit = _fit(ctx)
    finally:
        _tool("stop", tracker.stop)
        window[1] = _read(ctx)
    d = tracker.final_emissions_data
    hardware = [str(h) for h in tracker._conf.get("hardware", [])]
    gpus = int(tracker._conf.get("gpu_count") or 0)
    return {"fit": fit, "gpu_J": d.gpu_energy * J_PER_KWH if gpus else None, "reference_J": _span(window, fit),
            "reference": "counter read just before tracker.start() and just after tracker.stop()",
            "gpu_how": "pynvml" if gpus else "no GPU",
            "cpu": f"{d.cpu_energy * J_PER_KWH:.0f} J ({_codecarbon_how(hardware, 'CPU')})",
            "dram": f"{d.ram_energy * J_PER_KWH:.0f} J ({_codecarbon_how(hardware, 'RAM')})",
            "hardware": hardware}


def run_zeus(ctx: dict[str, Any]) -> dict[str, Any]:
    import torch

    from benchmarks.workload import on_cuda

    cuda = on_cuda(ctx["args"].accelerator)

    def start() -> Any:
        from zeus.monitor import ZeusMonitor

        monitor = ZeusMonitor(gpu_indices=[torch.cuda.current_device()] if cuda else None)
        window[0] = _read(ctx)
        monitor.begin_window("fit", sync_execution=cuda)
        return monitor

    window: list[float | None] = [None, None]
    monitor = _tool("start", start)
    fit = _fit(ctx)
    m = _tool("stop", lambda: monitor.end_window("fit", sync_execution=cuda))
    window[1] = _read(ctx)

    def part(values: dict[int, float] | None) -> str:
        return "not reported (no RAPL)" if not values else f"{sum(values.values()):.0f} J (measured: RAPL)"

    return {"fit": fit, "gpu_J": sum(m.gpu_energy.values()) if m.gpu_energy else None,
            "reference_J": _span(window, fit),
            "reference": "counter read just before begin_window() and just after end_window()",
            "gpu_how": "nvmlDeviceGetTotalEnergyConsumption" if m.gpu_energy else "no GPU",
            "cpu": part(m.cpu_energy), "dram": part(m.dram_energy)}


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "bare": run_bare, "green_mlops": run_green_mlops, "lightning": run_lightning,
    "mlflow-system": run_mlflow_system, "codecarbon": run_codecarbon, "zeus": run_zeus}


def child(args: argparse.Namespace) -> int:
    """Run one configuration once and write its result JSON (also when its tool fails)."""
    from benchmarks.workload import GpuCounter, peak_rss_mb, prepare

    result: dict[str, Any] = {"config": args.child}
    try:
        prepare(args.accelerator)
        with tempfile.TemporaryDirectory(prefix=f"anchors-{args.child}-") as tmp:
            ctx = {"args": args, "counter": GpuCounter.open(args.accelerator), "tmp": tmp,
                   "store": f"sqlite:///{tmp}/mlflow.db"}
            result.update(RUNNERS[args.child](ctx))
    except ToolFailed as exc:
        result["error"] = str(exc)
    except Exception as exc:  # a tool breaking the fit is a result too; the traceback goes to the log
        traceback.print_exc()
        result["error"] = f"during the fit: {type(exc).__name__}: {exc}"
    result["tool_seconds"] = TOOL_SECONDS
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.result).write_text(json.dumps(result, indent=1, default=str))
    return 0


# ------------------------------------------------------------------------------------------------
# The parent: sampler cost, interleaved rounds of child processes, the table
# ------------------------------------------------------------------------------------------------

def sampler_cost(hz: float, seconds: float) -> dict[str, Any]:
    """An EnergyMeter alone for ``seconds`` at ``hz``: this process's CPU time over wall time, in % of a core."""
    from green_mlops.meter import EnergyMeter

    meter = EnergyMeter(interval=1.0 / hz)
    meter.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    thread0 = meter.sampler_cpu_seconds()
    time.sleep(seconds)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    thread1 = meter.sampler_cpu_seconds()
    result = meter.stop()
    wall = wall1 - wall0
    return {"hz": hz, "seconds": wall, "process_cpu_pct": 100 * (cpu1 - cpu0) / wall,
            "sampler_thread_cpu_pct": None if thread0 is None or thread1 is None else 100 * (thread1 - thread0) / wall,
            "sources": [f"{s.info.name}: {s.info.provenance} {s.info.method}" for s in result.sources]}


def round_order(configs: list[str], r: int) -> list[str]:
    """As given on even rounds, reversed on odd ones (A B C, C B A, ...), so linear drift cancels."""
    return list(configs) if r % 2 == 0 else list(reversed(configs))


def run_child(config: str, args: argparse.Namespace, out: Path, r: int) -> dict[str, Any]:
    """One configuration in a fresh interpreter; a crash or time-out becomes an error row."""
    result_path = out / f"anchors-{r}-{config}.json"
    log_path = out / f"anchors-{r}-{config}.log"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", config, "--result", str(result_path),
           "--accelerator", args.accelerator, "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--batch-size", str(args.batch_size), "--country", args.country, "--idle-seconds", str(args.idle_seconds)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    row: dict[str, Any] = {"round": r, "config": config, "wall_s": time.perf_counter() - t0}
    if result_path.exists():
        row.update(json.loads(result_path.read_text()))
    elif rc is None:
        row["error"] = f"timed out after {args.timeout} s (log: {log_path.name})"
    else:
        tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][-1:] or ["no output"]
        row["error"] = f"exit {rc}: {tail[0][:300]}"
    return row


def _spread(values: list[float], spec: str, unit: str = "") -> str:
    """Median, then (min…max) when there are several values: "+1.23 % (+0.50…+2.00)"."""
    if not values:
        return "n/a"
    med = f"{statistics.median(values):{spec}}{unit}"
    return med + (f" ({min(values):{spec}}…{max(values):{spec}})" if len(values) > 1 else "")


def summarise(rows: list[dict[str, Any]], configs: list[str]) -> dict[str, dict[str, Any]]:
    """Per configuration: throughput and its paired ratio to bare, GPU energy error, what it reports."""
    bare = {r["round"]: r["fit"]["steps_per_s"] for r in rows if r["config"] == "bare" and "fit" in r}
    bare_mem = {r["round"]: _memory_mb(r) for r in rows if r["config"] == "bare" and "fit" in r}
    out: dict[str, dict[str, Any]] = {}
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        ok = [r for r in mine if "fit" in r and "error" not in r]
        errors = [r["error"] for r in mine if "error" in r]
        s: dict[str, Any] = {"runs": len(mine), "ok": len(ok), "errors": errors}
        if ok:
            last = ok[-1]
            rates = [r["fit"]["steps_per_s"] for r in ok]
            ratios = [r["fit"]["steps_per_s"] / bare[r["round"]] for r in ok if r["round"] in bare]
            errs = [100 * (r["gpu_J"] / r["reference_J"] - 1) for r in ok
                    if r.get("gpu_J") is not None and r.get("reference_J")]
            s.update({
                "steps_per_s": rates, "steps_per_s_median": statistics.median(rates), "ratios": ratios,
                "gpu_error_pct": errs, "gpu_J": [r.get("gpu_J") for r in ok],
                "reference_J": [r.get("reference_J") for r in ok], "gpu_how": last.get("gpu_how", "—"),
                "cpu": last.get("cpu", "—"), "dram": last.get("dram", "—"),
                "idle": last.get("idle", IDLE[config]), "aligned": last.get("aligned", ALIGNED[config]),
                "provenance": last.get("provenance", PROVENANCE[config]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
                "children_rss_mb": max(r["fit"]["children_rss_mb"] for r in ok),
                "children_uss_mb": max(r["fit"].get("children_uss_mb", 0.0) for r in ok),
                "rss_mb_at_end": statistics.median(r["fit"].get("rss_mb_at_end", 0.0) for r in ok),
                "children": ok[-1]["fit"].get("children", []),
                "memory_vs_bare_mb": [_memory_mb(r) - bare_mem[r["round"]] for r in ok if r["round"] in bare_mem],
                "main_thread_cpu_us": statistics.median(r["fit"]["main_thread_cpu_us"] for r in ok),
            })
        out[config] = s
    return out


def _memory_mb(row: dict[str, Any]) -> float:
    """What a run held: the training process's peak RSS plus its child processes' unique memory (USS)."""
    return row["peak_rss_mb"] + row["fit"].get("children_uss_mb", 0.0)


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The markdown table: one row per configuration, failures with their error."""
    lines = ["| configuration | steps/s, median | throughput vs bare, median (min–max) | GPU energy vs NVML counter, "
             "median (min…max) | CPU | DRAM | idle subtracted | step-aligned | provenance | peak RSS MB (+ child "
             "processes RSS / USS) | RSS at the end of the timed steps MB | memory vs bare MB, median (min…max) |",
             "|" + " --- |" * 12]
    for config, s in summary.items():
        if not s.get("ok"):
            err = (s["errors"] or ["not run"])[0].replace("|", "/")
            lines.append(f"| {config} | failed: {err} |" + " |" * 10)
            continue
        ratios = s["ratios"]
        ratio = (f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})" if ratios
                 else "n/a (no bare run)")
        if s["gpu_error_pct"]:
            gpu = _spread(s["gpu_error_pct"], "+.2f", " %")
        elif config in ("bare", "lightning"):
            gpu = "—"
        elif any(j is not None for j in s["gpu_J"]):
            gpu = "no counter here"
        else:
            gpu = "no GPU here" if s["gpu_how"].startswith("no GPU") else "not reported"
        note = f"; {len(s['errors'])} failed run(s)" if s["errors"] else ""
        lines.append(f"| {config} | {s['steps_per_s_median']:.1f} | {ratio}{note} | {gpu} | {s['cpu']} | "
                     f"{s['dram']} | {s['idle']} | {s['aligned']} | {s['provenance']} | "
                     f"{s['peak_rss_mb']:.0f} (+{s['children_rss_mb']:.0f} / {s['children_uss_mb']:.0f}) | "
                     f"{s['rss_mb_at_end']:.0f} | "
                     f"{'0' if config == 'bare' else _spread(s['memory_vs_bare_mb'], '+.0f')} |")
    return "\n".join(lines)


def machine_info(accelerator: str) -> dict[str, Any]:
    """Machine, driver, package versions and date, for the record in BENCHMARKS.md."""
    info: dict[str, Any] = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
                            "command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu": platform.processor()}
    try:
        info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info["cpus"] = os.cpu_count()
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = "not installed" if pkg != "green-mlops" else "source tree"
    info["versions"] = versions
    if accelerator != "cpu":
        try:
            import pynvml

            pynvml.nvmlInit()
            info["gpu"] = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception as exc:  # the record says what could not be read
            info["gpu"] = f"unknown ({exc})"
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="gpu", choices=("gpu", "cuda", "cpu"))
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", type=int, default=800, help="timed optimiser steps per run (default 800)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 on GPU, 2 on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--country", default="USA", help="ISO 3166 alpha-3 code for CodeCarbon's offline tracker")
    p.add_argument("--idle-seconds", type=float, default=0.0, help="green_mlops idle baseline before fit")
    p.add_argument("--sampler-seconds", type=float, default=10.0,
                   help="how long the EnergyMeter runs alone at 10 Hz and at 100 Hz (0: skip)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take before it is an error")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="start no round that would end later than this after launch (default 540; 0: no limit)")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="folder for the results ($OUT)")
    p.add_argument("--first-round", type=int, default=0, help="number of the first round (continue a series "
                   "split over several calls; the round order keeps alternating)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="no runs: summarise the rows of these anchors.json "
                   "files (rounds split over several calls) into one table")
    p.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("rounds", "steps", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    if args.sampler_seconds < 0 or args.idle_seconds < 0 or args.timeout <= 0:
        p.error("--sampler-seconds and --idle-seconds must be ≥ 0, --timeout > 0")
    args.warmup = args.warmup if args.warmup is not None else (30 if args.accelerator != "cpu" else 2)
    if args.warmup < 1:
        p.error("--warmup must be ≥ 1")
    configs = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs or len(set(configs)) != len(configs):
        p.error(f"--only takes distinct names from {', '.join(CONFIGS)}; got {args.only!r}")
    args.configs = configs
    return args


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.merge:  # no runs here: no GPU needed
        return merge(args)
    if args.accelerator != "cpu":
        from benchmarks.workload import check_accelerator

        check_accelerator(args.accelerator)
    out = Path(args.out).resolve()  # the children run in the repository root
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {**machine_info(args.accelerator), "args": vars(args), "sampler": [], "rows": []}

    def save() -> None:
        (out / "anchors.json").write_text(json.dumps(record, indent=1, default=str))

    for hz in (10, 100) if args.sampler_seconds else ():
        record["sampler"].append(sampler_cost(hz, args.sampler_seconds))
        print(f"sampler alone at {hz} Hz: {record['sampler'][-1]['process_cpu_pct']:.2f} % of one core", flush=True)
        save()
    failed: dict[str, str] = {}
    rounds_t0 = time.monotonic()
    for i, r in enumerate(range(args.first_round, args.first_round + args.rounds)):
        if i and not within_budget(t0, rounds_t0, i, args.budget_s):
            print(f"stopping after {i} rounds: another would end past --budget-s {args.budget_s:g}", flush=True)
            break
        for config in round_order(args.configs, r):
            if config in failed:
                continue
            row = run_child(config, args, out, r)
            record["rows"].append(row)
            save()
            if "error" in row:
                failed[config] = row["error"]
                print(f"round {r} {config:14s} FAILED: {row['error']}", flush=True)
            else:
                fit = row["fit"]
                gpu = "" if row.get("gpu_J") is None else f"  GPU {row['gpu_J']:.0f} J vs counter {row.get('reference_J')}"
                print(f"round {r} {config:14s} {fit['steps_per_s']:7.1f} steps/s{gpu}", flush=True)
    _pack(out)
    return report(record, args, out)


def merge(args: argparse.Namespace) -> int:
    """One table from the rows of several calls' anchors.json (rounds of one series split over calls)."""
    merged = [json.loads(Path(f).read_text()) for f in args.merge]
    record = {**merged[0], "rows": [row for m in merged for row in m["rows"]],
              "sampler": [s for m in merged for s in m["sampler"]][:2],
              "command": " + ".join(m["command"] for m in merged)}
    first = merged[0]["args"]  # the runs' own settings, not this command line's defaults
    args.steps, args.configs = first["steps"], first["configs"]
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return report(record, args, out)


def _pack(out: Path) -> None:
    """Per-run logs and results into one archive, so few files come back from a remote machine."""
    import tarfile

    runs = sorted(out.glob("anchors-*-*.*"))
    if runs:
        with tarfile.open(out / "anchors-runs.tar.gz", "w:gz") as tar:
            for f in runs:
                tar.add(f, arcname=f.name)
        for f in runs:
            f.unlink()


def report(record: dict[str, Any], args: argparse.Namespace, out: Path) -> int:
    """Summarise the rows, write anchors.json and anchors.md, print the table last."""
    record["summary"] = summarise(record["rows"], args.configs)
    (out / "anchors.json").write_text(json.dumps(record, indent=1, default=str))
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    lines = [f"{record.get('gpu', 'no GPU')}, driver {record.get('driver', '—')}; {record['cpu']} "
             f"({record['cpus']} CPUs); Python {record['python']}; {versions}; {record['date']}; "
             f"{len({r['round'] for r in record['rows']})} rounds × {args.steps} timed steps; "
             f"`{record['command']}`", ""]
    for s in record["sampler"]:
        thread = s["sampler_thread_cpu_pct"]
        lines.append(f"Sampler alone at {s['hz']} Hz for {s['seconds']:.0f} s: {s['process_cpu_pct']:.2f} % of one "
                     "core (process CPU time / wall time" + ("" if thread is None else f"; sampler thread {thread:.2f} %")
                     + f"); sources: {'; '.join(s['sources'])}")
    lines += ["", "GPU energy: the tool's figure against the NVML energy counter over the tool's own window "
              "(green_mlops: read as its meter starts and stops; CodeCarbon and Zeus: read just before the "
              "tool starts and just after it stops; MLflow: around trainer.fit). MLflow logs power only: its energy is the mean logged power × "
              "the fit's time. Peak RSS: the training process (ru_maxrss), + its child processes' resident (RSS) "
              "and unique (USS) memory at the end of the timed steps (green_mlops: the MLflow delivery process). "
              "Memory vs bare: peak RSS + children's USS, minus bare's in the same round."]
    children = {c: s.get("children") for c, s in record["summary"].items() if s.get("children")}
    if children:
        lines += ["", "Child processes at the end of the timed steps (RSS/USS): " + "; ".join(
            f"{c}: " + ", ".join(f"{k['what']} {k['rss_mb']:.0f}/{k['uss_mb']:.0f} MB" for k in kids)
            for c, kids in children.items())]
    lines += ["", table(record["summary"])]
    text = "\n".join(lines)
    (out / "anchors.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
