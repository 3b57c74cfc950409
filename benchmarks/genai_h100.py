"""GenOps on one GPU: energy per request and per output token against request rate, at steady state, for Llama shapes.

For each size (Llama 3.2 1B and 3B shapes, bf16, random weights built here: no download), this
script serves the model with ``transformers serve`` (continuous batching) on the GPU and runs
``green-mlops genai`` over the shared rate grid (``green_mlops.genai.config.RATE_GRID``) with the
local meter (NVML for the GPU). Every level runs a warm-up (excluded), a steady window (the
measure) and a drain (reported apart); the load generator's CPU share is split off the server's.
It writes per-model tables and figures, a combined table, comparison figures (the paper's Figs.
8-10 shapes) and a short table, printed last. One command, within a time budget (default 520 s):
a sweep that would overrun its share is interrupted and keeps the levels it finished. It prints
its time estimate first; a grid that does not fit one 10-minute call is split by ``--sizes`` and
``--rps`` (and repeats by ``--first-round``), and ``--merge`` joins the calls' folders (no GPU).

    python benchmarks/genai_h100.py --out "$OUT"                    # on the GPU machine (H100 or H200)
    python benchmarks/genai_h100.py --sizes 1b --rps 1,2,5,10 --out "$OUT/a"   # one share of the grid
    python benchmarks/genai_h100.py --merge out/a out/b out/c out/d --out merged  # anywhere, no GPU
    python benchmarks/genai_h100.py --smoke --out /tmp/genai_smoke  # the same flow on a CPU, tiny model
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from green_mlops.genai.config import (  # noqa: E402
    RATE_GRID,
    STEADY_LATENCY_FACTOR,
    STEADY_MIN_S,
    WARMUP_LATENCY_FACTOR,
    WARMUP_MIN_S,
)
from green_mlops.genai.report import plot_compare  # noqa: E402
from green_mlops.genai.saturation import find_saturation  # noqa: E402
from green_mlops.genai.transformers_server import TransformersServer  # noqa: E402

WRAP_UP_S = 25.0  # what a sweep needs after SIGINT to aggregate_sweep, plot and write its finished levels
SETUP_S = 90.0  # building a model and starting its server, per size (H100: 40-70 s)
COOLDOWN_S = 2.0
LEVELS_FILE, DEVICES_FILE, SUMMARY_FILE = "genai_levels.csv", "genai_devices.csv", "genai_summary.json"
GRID = ",".join(f"{r:g}" for r in RATE_GRID)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "genai_out"), help="output folder (default $OUT)")
    p.add_argument("--sizes", default="1b,3b", help="model shapes from green_mlops.genai.random_llama.SHAPES")
    p.add_argument("--rps", default=GRID, help=f"request rates per second (default the shared grid {GRID})")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per level (default: until "
                   f"max({WARMUP_MIN_S:g} s, {WARMUP_LATENCY_FACTOR:g} × median latency answered))")
    p.add_argument("--duration", type=float, default=None, help="steady window seconds per level (default: "
                   f"max(--steady-min, {STEADY_LATENCY_FACTOR:g} × warm-up median latency))")
    p.add_argument("--steady-min", type=float, default=STEADY_MIN_S, help="shortest automatic steady window, s")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds (also caps a warm-up)")
    p.add_argument("--idle", type=float, default=5.0, help="idle baseline, seconds, before each sweep")
    p.add_argument("--first-round", type=int, default=0, help="number of this call's first repeat (seeds the "
                   "arrivals; continue a series split over calls)")
    p.add_argument("--rounds", type=int, default=1, help="repeats of every sweep in this call")
    p.add_argument("--budget", type=float, default=520.0, help="seconds for the whole script")
    p.add_argument("--latency-guess", type=float, default=16.0,
                   help="median latency (s) assumed by the time estimate printed first (H100, 128 tokens: 13-25)")
    p.add_argument("--device-rps", type=float, default=10.0, help="rate of the per-device comparison (Fig. 10)")
    p.add_argument("--server-args", default="", help="extra `transformers serve` options, e.g. "
                   "'--cb-use-cuda-graph' or '--attn-implementation sdpa'")
    p.add_argument("--no-mlflow", action="store_true", help="files only (MLflow runs go to $OUT/mlflow.db otherwise)")
    p.add_argument("--merge", nargs="+", metavar="DIR", help="no runs: join the folders of earlier calls (shares of "
                   "the grid, repeats) into one table and figures in --out")
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU, two short levels: checks the flow")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.rps, args.warmup, args.duration = "tiny", "2,4", 0.5, 2.0
        args.max_tokens, args.idle, args.budget, args.latency_guess = 8, 1.0, 150.0, 0.5
    if args.rounds < 1 or args.first_round < 0:
        p.error("--rounds must be ≥ 1 and --first-round ≥ 0")
    return args


def estimate_s(args: argparse.Namespace) -> float:
    """Seconds the call should take with median latency ``--latency-guess``: setup, idle, and every level's phases."""
    latency = args.latency_guess
    warmup = args.warmup if args.warmup is not None else max(WARMUP_MIN_S, WARMUP_LATENCY_FACTOR * latency)
    steady = args.duration if args.duration is not None else max(args.steady_min, STEADY_LATENCY_FACTOR * latency)
    rates = [r for r in args.rps.split(",") if r.strip()]
    sizes = [s for s in args.sizes.split(",") if s.strip()]
    per_sweep = args.idle + len(rates) * (warmup + steady + latency + COOLDOWN_S) + WRAP_UP_S
    return len(sizes) * (SETUP_S + args.rounds * per_sweep)


def check_environment(smoke: bool) -> None:
    """Fail at once, saying what to install, when transformers serve or the GPU is missing."""
    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        sys.exit(f"transformers {transformers.__version__} is too old: `transformers serve MODEL_PATH` needs 5.x; "
                 "carry the transformers 5 wheels (see docs/genai.md) and put them first on PYTHONPATH")
    for module in ("fastapi", "uvicorn", "openai", "aiohttp", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            sys.exit(f"missing Python package {module!r}: carry its wheel (see docs/genai.md)")
    if not smoke:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            sys.exit("no NVIDIA GPU visible; use --smoke for a CPU check of the flow")


def build(size: str, path: Path, device: str, dtype: str) -> dict:
    """Build the model in a child process, so this process never holds GPU memory the server needs."""
    code = ("import json,sys; from green_mlops.genai.random_llama import build_random_llama as b; "
            f"m=b({str(path)!r}, {size!r}, dtype={dtype!r}, device={device!r}); "
            "print(json.dumps({'parameters': m.parameters, 'vocab_size': m.vocab_size}))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"building the {size} model failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep(server: TransformersServer, args: argparse.Namespace, out: Path, deadline: float, seed: int) -> int:
    """``green-mlops genai`` against the server, in a child process interrupted (SIGINT) at ``deadline``."""
    cmd = [sys.executable, "-m", "green_mlops.commands.genai", "--endpoint", server.url, "--model", server.model,
           "--rps", args.rps, "--max-tokens", str(args.max_tokens), "--timeout", f"{args.timeout:g}",
           "--idle-seconds", f"{args.idle:g}", "--steady-min", f"{args.steady_min:g}", "--seed", str(seed),
           "--output", str(out)]
    cmd += ["--warmup", f"{args.warmup:g}"] if args.warmup is not None else []
    cmd += ["--duration", f"{args.duration:g}"] if args.duration is not None else []
    if args.no_mlflow:
        cmd.append("--no-mlflow")
    else:
        cmd += ["--tracking-uri", f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}", "--experiment", "genai-gpu"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(cmd, env=env)
    try:
        return child.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        print(f"[genai_h100] time budget reached: interrupting the sweep of {server.model}", flush=True)
        child.send_signal(signal.SIGINT)
        try:
            return child.wait(timeout=WRAP_UP_S)
        except subprocess.TimeoutExpired:
            child.kill()
            return child.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:  # no runs here: no GPU needed
        return merge([Path(d) for d in args.merge], Path(args.out), args.device_rps)
    start = time.monotonic()
    end_at = start + args.budget
    guess = estimate_s(args)
    print(f"[genai] estimated {guess:.0f} s at a median latency of {args.latency_guess:g} s, budget "
          f"{args.budget:g} s" + ("" if guess <= args.budget else ": will not fit; split the grid over calls with "
                                 "--sizes and --rps, then --merge the folders"), flush=True)
    check_environment(args.smoke)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models_dir = Path(os.environ.get("GENAI_MODELS_DIR", "/tmp/genai_models"))
    device, dtype = ("cpu", "float32") if args.smoke else ("cuda", "bfloat16")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    rounds = list(range(args.first_round, args.first_round + args.rounds))
    levels, devices, meta = [], [], {}
    for i, size in enumerate(sizes):
        t0 = time.monotonic()
        info = build(size, models_dir / size, device, dtype)
        print(f"[genai] {size}: {info['parameters'] / 1e9:.3f} B parameters built in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        extra = tuple(args.server_args.split()) + (("--cb-num-blocks", "64", "--cb-block-size", "32")
                                                   if args.smoke else ())
        meta[size] = {**info, "rounds": {}}
        with TransformersServer(models_dir / size, device=device, dtype=dtype, extra_args=extra,
                                log_path=out / f"serve_{size}.log", start_timeout_s=240) as server:
            print(f"[genai] {size}: server up after {time.monotonic() - t0:.0f} s", flush=True)
            for j, r in enumerate(rounds):
                left = (len(sizes) - i) * len(rounds) - j
                share = (end_at - time.monotonic()) / left
                result_dir = out / size / f"r{r}"
                t1 = time.monotonic()
                code = sweep(server, args, result_dir, time.monotonic() + share - WRAP_UP_S - 15, seed=r)
                found = collect(result_dir, size, r, info["parameters"])
                meta[size]["rounds"][r] = {"sweep_exit_code": code, "seconds": time.monotonic() - t1,
                                           "saturation": found[2]}
                if found[0] is not None:
                    levels.append(found[0])
                    devices += [found[1]] if found[1] is not None else []
    if not levels:
        print("[genai] no sweep finished a level", flush=True)
        return 1
    table = pd.concat(levels, ignore_index=True)
    table.to_csv(out / LEVELS_FILE, index=False)
    if devices:
        pd.concat(devices, ignore_index=True).to_csv(out / DEVICES_FILE, index=False)
    (out / SUMMARY_FILE).write_text(json.dumps({"args": vars(args), "models": meta, "versions": versions(),
                                                "seconds": time.monotonic() - start}, indent=2, default=str))
    summarise(table, pd.concat(devices, ignore_index=True) if devices else None, out,
              2.0 if args.smoke else args.device_rps)
    return 0


def collect(folder: Path, size: str, round_: int, parameters: int) -> tuple[pd.DataFrame | None, pd.DataFrame | None,
                                                                             dict | None]:
    """One sweep's levels and devices tagged with model and round, and its saturation; Nones when it wrote none."""
    if not (folder / "levels.csv").is_file():
        return None, None, None
    tags = {"model": size, "round": round_}
    levels = pd.read_csv(folder / "levels.csv").assign(**tags, parameters=parameters)
    devices = pd.read_csv(folder / "devices.csv").assign(**tags) if (folder / "devices.csv").is_file() else None
    return levels, devices, json.loads((folder / "summary.json").read_text())["saturation"]


def merge(folders: list[Path], out: Path, device_rps: float) -> int:
    """One table and one set of figures from the folders of several calls (shares of the grid, repeats)."""
    tables = [pd.read_csv(f / LEVELS_FILE) for f in folders if (f / LEVELS_FILE).is_file()]
    if not tables:
        print(f"[genai] no {LEVELS_FILE} in {', '.join(map(str, folders))}", flush=True)
        return 1
    devices = [pd.read_csv(f / DEVICES_FILE) for f in folders if (f / DEVICES_FILE).is_file()]
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / LEVELS_FILE, index=False)
    device_table = pd.concat(devices, ignore_index=True) if devices else None
    if device_table is not None:
        device_table.to_csv(out / DEVICES_FILE, index=False)
    summaries = {str(f): json.loads((f / SUMMARY_FILE).read_text()) for f in folders if (f / SUMMARY_FILE).is_file()}
    (out / SUMMARY_FILE).write_text(json.dumps({"merged": summaries}, indent=2, default=str))
    summarise(table, device_table, out, device_rps)
    return 0


MEDIAN_COLUMNS = ("energy_per_request_J", "server_energy_per_request_J", "energy_per_output_token_J",
                  "gpu_energy_per_request_J", "cpu_energy_per_request_J", "loadgen_cpu_energy_J", "energy_J",
                  "served_rps", "latency_p50_s", "ttft_p50_s", "duration_s", "warmup_s", "drain_s", "drain_energy_J",
                  "steady_over_latency", "loadgen_cpu_share")


def by_rate(table: pd.DataFrame) -> pd.DataFrame:
    """Per model and rate over its repeats: the median of every figure, min…max of energy per request, repeats."""
    groups = table.groupby(["model", "rate_rps"])
    out = groups[[c for c in MEDIAN_COLUMNS if c in table]].median()
    out["energy_per_request_min_J"] = groups["energy_per_request_J"].min()
    out["energy_per_request_max_J"] = groups["energy_per_request_J"].max()
    out["repeats"] = groups.size()
    out["sustainable"] = groups["sustainable"].all()
    out["unsustainable_reason"] = groups["unsustainable_reason"].agg(lambda v: "; ".join(sorted({str(x) for x in v
                                                                                            if pd.notna(x) and x})))
    out["parameters"] = groups["parameters"].first()
    return out.reset_index()


def summarise(table: pd.DataFrame, devices: pd.DataFrame | None, out: Path, device_rps: float) -> None:
    """The per-rate table (medians over repeats), saturation per model, comparison figures; the short table last."""
    medians = by_rate(table)
    medians.to_csv(out / "genai_by_rate.csv", index=False)
    grid = sorted(set(medians["rate_rps"]))
    saturation, missing = {}, []
    for model, rows in medians.groupby("model"):
        saturation[model] = find_saturation(rows)
        missing += [f"{model} at {r:g} rps" for r in grid if r not in set(rows["rate_rps"])]
    per_model = {m: rows for m, rows in medians.groupby("model")}
    device_medians = None
    if devices is not None:
        device_medians = {m: d.groupby(["rate_rps", "device", "domain", "provenance"], as_index=False)
                          ["energy_per_request_J"].median() for m, d in devices.groupby("model")}
    plot_compare(per_model, out, device_medians, at_rps=device_rps)
    print(short_table(medians, saturation, missing), flush=True)


def versions() -> dict[str, str]:
    """The versions that shape the numbers: server, framework, driver."""
    import torch
    import transformers

    out = {"transformers": transformers.__version__, "torch": torch.__version__}
    try:
        import pynvml

        pynvml.nvmlInit()
        out["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
        out["gpu"] = str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))
    except Exception as exc:  # a CPU-only machine has no driver to report
        out["gpu"] = f"none ({type(exc).__name__})"
    return out


def short_table(medians: pd.DataFrame, saturation: dict, missing: list[str]) -> str:
    """Per model and rate (medians over repeats): energy per request (min…max), the server's, per token, GPU,
    the load generator's CPU share, latency, window and drain, sustained; then saturation and gaps in the grid."""
    lines = [f"{'model':>6} {'rps':>5} {'n':>2} {'J/req (min…max)':>20} {'server J/req':>12} {'J/token':>8} "
             f"{'GPU J/req':>9} {'client CPU':>10} {'p50 lat s':>9} {'window s':>8} {'drain s':>7} {'ok?':>4}"]
    for _, r in medians.sort_values(["parameters", "rate_rps"]).iterrows():
        spread = f"{r['energy_per_request_J']:.2f} ({r['energy_per_request_min_J']:.2f}…{r['energy_per_request_max_J']:.2f})"
        lines.append(f"{r['model']:>6} {r['rate_rps']:>5g} {r['repeats']:>2d} {spread:>20} "
                     f"{r.get('server_energy_per_request_J', float('nan')):>12.2f} {r['energy_per_output_token_J']:>8.4f} "
                     f"{r['gpu_energy_per_request_J']:>9.2f} {r.get('loadgen_cpu_share', float('nan')):>10.1%} "
                     f"{r['latency_p50_s']:>9.2f} {r['duration_s']:>8.1f} {r['drain_s']:>7.1f} "
                     f"{'yes' if r['sustainable'] else 'NO':>4}")
    for model, sat in saturation.items():
        lines.append(f"{model}: {sat}")
    lines.append("grid: every model at every rate" if not missing else f"grid gaps: {', '.join(missing)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
