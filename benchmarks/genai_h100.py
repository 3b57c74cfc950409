"""GenOps on one GPU: energy per request and per output token against request rate, for Llama-shaped models.

For each size (Llama 3.2 1B and 3B shapes, bf16, random weights built here: no download), this
script serves the model with ``transformers serve`` (continuous batching) on the GPU, runs
``green-mlops genai`` over rates from 1 to 40 requests per second with the local meter (NVML for the
GPU), and writes per-model tables and figures, a combined table, comparison figures (the paper's
Figs. 8-10 shapes) and a short table, printed last. One command, within a time budget (default
520 s): a sweep that would overrun its share is interrupted and keeps the levels it finished.

    python benchmarks/genai_h100.py --out "$OUT"                    # on the GPU machine
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

from green_mlops.genai.report import plot_compare  # noqa: E402
from green_mlops.genai.transformers_server import TransformersServer  # noqa: E402

WRAP_UP_S = 25.0  # what a sweep needs after SIGINT to analyse, plot and write its finished levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("OUT", "genai_h100_out"), help="output folder (default $OUT)")
    p.add_argument("--sizes", default="1b,3b", help="model shapes from green_mlops.genai.random_llama.SHAPES")
    p.add_argument("--rps", default="1,2,5,10,20,30,40", help="request rates per second")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of arrivals per rate level")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument("--idle", type=float, default=5.0, help="idle baseline, seconds, before each sweep")
    p.add_argument("--budget", type=float, default=520.0, help="seconds for the whole script")
    p.add_argument("--device-rps", type=float, default=10.0, help="rate of the per-device comparison (Fig. 10)")
    p.add_argument("--server-args", default="", help="extra `transformers serve` options, e.g. "
                   "'--cb-use-cuda-graph' or '--attn-implementation sdpa'")
    p.add_argument("--no-mlflow", action="store_true", help="files only (MLflow runs go to $OUT/mlflow.db otherwise)")
    p.add_argument("--smoke", action="store_true", help="tiny model on the CPU, two short levels: checks the flow")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.rps, args.duration, args.max_tokens, args.idle, args.budget = "tiny", "2,4", 2.0, 8, 1.0, 150.0
    return args


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


def sweep(server: TransformersServer, args: argparse.Namespace, out: Path, deadline: float) -> int:
    """``green-mlops genai`` against the server, in a child process interrupted (SIGINT) at ``deadline``."""
    cmd = [sys.executable, "-m", "green_mlops.commands.genai", "--endpoint", server.url, "--model", server.model,
           "--rps", args.rps, "--duration", f"{args.duration:g}", "--max-tokens", str(args.max_tokens),
           "--timeout", f"{args.timeout:g}", "--idle-seconds", f"{args.idle:g}", "--output", str(out)]
    if args.no_mlflow:
        cmd.append("--no-mlflow")
    else:
        cmd += ["--tracking-uri", f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}", "--experiment", "genai-h100"]
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
    start = time.monotonic()
    end_at = start + args.budget
    check_environment(args.smoke)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    models_dir = Path(os.environ.get("GENAI_MODELS_DIR", "/tmp/genai_models"))
    device, dtype = ("cpu", "float32") if args.smoke else ("cuda", "bfloat16")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    levels, devices, meta = {}, {}, {}
    for i, size in enumerate(sizes):
        t0 = time.monotonic()
        info = build(size, models_dir / size, device, dtype)
        print(f"[genai_h100] {size}: {info['parameters'] / 1e9:.3f} B parameters built in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        extra = tuple(args.server_args.split()) + (("--cb-num-blocks", "64", "--cb-block-size", "32")
                                                   if args.smoke else ())
        result_dir = out / size
        with TransformersServer(models_dir / size, device=device, dtype=dtype, extra_args=extra,
                                log_path=out / f"serve_{size}.log", start_timeout_s=240) as server:
            print(f"[genai_h100] {size}: server up after {time.monotonic() - t0:.0f} s", flush=True)
            share = (end_at - time.monotonic()) / (len(sizes) - i)
            code = sweep(server, args, result_dir, time.monotonic() + share - WRAP_UP_S - 15)
        meta[size] = {**info, "sweep_exit_code": code, "seconds": time.monotonic() - t0}
        if (result_dir / "levels.csv").is_file():
            levels[size] = pd.read_csv(result_dir / "levels.csv").assign(model=size, parameters=info["parameters"])
            if (result_dir / "devices.csv").is_file():
                devices[size] = pd.read_csv(result_dir / "devices.csv").assign(model=size)
            meta[size]["saturation"] = json.loads((result_dir / "summary.json").read_text())["saturation"]
    if not levels:
        print("[genai_h100] no sweep finished a level", flush=True)
        return 1
    table = pd.concat(levels.values(), ignore_index=True)
    table.to_csv(out / "genai_h100_levels.csv", index=False)
    if devices:
        pd.concat(devices.values(), ignore_index=True).to_csv(out / "genai_h100_devices.csv", index=False)
    plot_compare(levels, out, devices, at_rps=float(args.device_rps) if not args.smoke else 2.0)
    (out / "genai_h100_summary.json").write_text(json.dumps({"args": vars(args), "models": meta, "versions": versions(),
                                                             "seconds": time.monotonic() - start}, indent=2))
    print(short_table(table, meta), flush=True)
    return 0


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


def short_table(table: pd.DataFrame, meta: dict) -> str:
    """Per model and rate: requests, failures, energy per request and per token, GPU share, latency, sustained."""
    lines = [f"{'model':>6} {'rps':>5} {'sent':>5} {'fail':>5} {'J/req':>9} {'J/token':>9} {'GPU J/req':>10} "
             f"{'p50 lat s':>9} {'tok/s':>8} {'ok?':>4}"]
    for _, r in table.sort_values(["parameters", "rate_rps"]).iterrows():
        lines.append(f"{r['model']:>6} {r['rate_rps']:>5g} {r['requests']:>5d} {r['failed']:>5d} "
                     f"{r['energy_per_request_J']:>9.2f} {r['energy_per_output_token_J']:>9.4f} "
                     f"{r['gpu_energy_per_request_J']:>10.2f} {r['latency_p50_s']:>9.2f} "
                     f"{r['output_tokens_per_s']:>8.0f} {'yes' if r['sustainable'] else 'NO':>4}")
    for size, m in meta.items():
        sat = m.get("saturation") or {}
        rate = sat.get("rate_rps")
        lines.append(f"{size}: {m['parameters'] / 1e9:.2f} B params; saturation "
                     f"{'not found' if rate is None else f'{rate:g} rps'} ({sat.get('criterion', 'no levels')})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
