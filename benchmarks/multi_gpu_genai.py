"""One LLM served over every visible GPU, priced per device by ``green-mlops genai`` at two request rates (issue #8).

``transformers serve`` (5.x) runs one process with one model; it has no tensor-parallel option. Two
ways to put a model on several GPUs, chosen with ``--mode``:

  replicas (default)  one ``transformers serve`` per GPU (``CUDA_VISIBLE_DEVICES=i``, continuous
      batching), and one ``green-mlops genai`` per replica, all started together, each sending
      rate / n of every total rate in ``--rps`` with its own seed. Client i runs with
      ``CUDA_VISIBLE_DEVICES=i`` so its meter opens GPU i alone; every client also meters the host,
      so CPU and DRAM are taken from client 0 only. Per level: requests and tokens summed over
      clients, energy = Σ_i GPU i (client i) + CPU + DRAM (client 0), net of idle. Each GPU's
      energy covers its own client's level window (first send to last answer); they start together
      and drift apart by at most one level's drain time.
  shard  one ``transformers serve --device auto`` over all GPUs: ``device_map="auto"`` (Accelerate
      splits the decoder layers, balanced over the GPUs; a pipeline, not tensor parallelism) and one
      ``green-mlops genai`` metering every GPU and the host. Continuous batching keeps its paged KV
      cache in one tensor on the model's first device, so it is off by default here
      (``--shard-cb`` tries it); without it the server generates one request at a time.

Writes per mode ``levels.csv``, ``devices.csv`` (one row per level and device: the paper's Fig. 10)
and ``device_energy_per_request.png`` under ``$OUT/<mode>/``, the clients' own folders beside them,
``multi_gpu_genai.json``, and prints a short table last.

    python3 benchmarks/multi_gpu_genai.py --out "$OUT"                        # replicas, 3B, 10 and 20 rps
    python3 benchmarks/multi_gpu_genai.py --mode shard --out "$OUT"
    python3 benchmarks/multi_gpu_genai.py --smoke --out /tmp/mgg              # CPU: two tiny replicas
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from benchmarks.genai_h100 import build, check_environment, versions  # noqa: E402
from green_mlops.genai.report import plot_devices  # noqa: E402
from green_mlops.genai.transformers_server import TransformersServer  # noqa: E402

MODES = ("replicas", "shard")
SUMMED = ("requests", "ok", "failed", "output_tokens", "prompt_tokens")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="replicas", help="replicas, shard, or both comma-separated (default replicas)")
    p.add_argument("--size", default="3b", help="model shape from green_mlops.genai.random_llama.SHAPES (default 3b)")
    p.add_argument("--rps", default=None, help="total request rates (default 10,20 for replicas, 1,2 for shard)")
    p.add_argument("--gpus", type=int, default=None, help="GPUs to use (default: every visible one)")
    p.add_argument("--duration", type=float, default=12.0, help="seconds of arrivals per level (default 12)")
    p.add_argument("--max-tokens", type=int, default=128, help="output tokens per request (default 128)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    p.add_argument("--idle", type=float, default=5.0, help="idle baseline, seconds")
    p.add_argument("--shard-cb", action="store_true", help="shard mode with continuous batching (see above)")
    p.add_argument("--server-args", default="", help="extra `transformers serve` options")
    p.add_argument("--out", default=os.environ.get("OUT", "multi_gpu_genai_out"), help="output folder ($OUT)")
    p.add_argument("--smoke", action="store_true", help="CPU: two tiny replicas, two short levels (checks the flow)")
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad or not args.modes:
        p.error(f"--mode must be one or more of {', '.join(MODES)}; got {args.mode!r}")
    if args.smoke:
        args.size, args.duration, args.max_tokens, args.idle = "tiny", 2.0, 8, 1.0
        args.gpus = args.gpus or 2
    for name in ("duration", "max_tokens", "timeout"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def gpu_count(args: argparse.Namespace) -> int:
    """GPUs to spread over: every visible one unless --gpus says fewer; fails before any load without two."""
    if args.smoke:
        return args.gpus
    import torch

    visible = torch.cuda.device_count()
    n = args.gpus or visible
    if n > visible or n < 1:
        sys.exit(f"--gpus {n} but {visible} GPU(s) are visible")
    if n < 2:
        print(f"[multi_gpu_genai] only {n} GPU visible: the run works but shows no split over GPUs", flush=True)
    return n


def rates(args: argparse.Namespace, mode: str) -> list[float]:
    text = args.rps or ("2,4" if args.smoke else ("10,20" if mode == "replicas" else "1,2"))
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sys.exit(f"--rps must be numbers separated by commas, e.g. 10,20; got {text!r}")
    if not values or min(values) <= 0:
        sys.exit(f"--rps must be positive numbers, e.g. 10,20; got {text!r}")
    return values


def tracking_uri(args: argparse.Namespace) -> str:
    return f"sqlite:///{Path(args.out).resolve() / 'mlflow.db'}"


def prepare_tracking(args: argparse.Namespace, experiment: str) -> None:
    """Create the SQLite store and the experiment once: concurrent clients would race on the store's migrations."""
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri(args))
    if c.get_experiment_by_name(experiment) is None:
        c.create_experiment(experiment, artifact_location=(Path(args.out).resolve() / "mlartifacts").as_uri())


def client(url: str, model: str, rps: list[float], args: argparse.Namespace, out: Path, seed: int,
           visible: str | None) -> subprocess.Popen:
    """``green-mlops genai`` against one server; ``visible`` restricts its meter to those GPUs."""
    cmd = [sys.executable, "-m", "green_mlops.commands.genai", "--endpoint", url, "--model", model,
           "--rps", ",".join(f"{r:g}" for r in rps), "--duration", f"{args.duration:g}",
           "--max-tokens", str(args.max_tokens), "--timeout", f"{args.timeout:g}",
           "--idle-seconds", f"{args.idle:g}", "--seed", str(seed), "--output", str(out),
           "--tracking-uri", tracking_uri(args),
           "--experiment", f"multi-gpu-genai-{out.parent.name}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    return subprocess.Popen(cmd, env=env)


def combine_replicas(clients: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Levels and devices of concurrent clients, one per replica on GPU i: GPUs from their own client, host once.

    Each client metered GPU i as its ``gpu0`` (CUDA_VISIBLE_DEVICES=i) and the whole host; the host rows
    of clients 1.. are dropped, so CPU and DRAM count once. Energies are net of each client's idle baseline.
    """
    levels = [pd.read_csv(c / "levels.csv") for c in clients]
    devices = []
    for i, c in enumerate(clients):
        d = pd.read_csv(c / "devices.csv")
        gpu = d["domain"] == "gpu"
        if gpu.sum() and set(d.loc[gpu, "device"]) != {"gpu0"}:
            raise ValueError(f"client {i} metered {sorted(set(d.loc[gpu, 'device']))}, not one GPU: "
                             "run each client with CUDA_VISIBLE_DEVICES set to its replica's GPU")
        d.loc[gpu, "device"] = f"gpu{i}"
        devices.append(d[gpu] if i else d)
    common = sorted(set.intersection(*(set(lv["level"]) for lv in levels)))
    dev = pd.concat(devices, ignore_index=True)
    dev = dev[dev["level"].isin(common)].drop(columns="rate_rps")
    rows = []
    for level in common:
        parts = [lv[lv["level"] == level].iloc[0] for lv in levels]
        row: dict[str, Any] = {"level": level, "rate_rps": sum(p["rate_rps"] for p in parts),
                               "replicas": len(parts), "start": min(p["start"] for p in parts),
                               "end": max(p["end"] for p in parts),
                               "window_skew_s": max(p["start"] for p in parts) - min(p["start"] for p in parts),
                               "sustainable": all(bool(p["sustainable"]) for p in parts)}
        for col in SUMMED:
            row[col] = sum(p[col] for p in parts if pd.notna(p[col]))
        mine = dev[dev["level"] == level]
        row["energy_J"] = float(mine["energy_J"].sum())
        row["energy_basis"] = parts[0]["energy_basis"]
        for domain in ("gpu", "cpu", "dram"):
            row[f"{domain}_energy_J"] = float(mine.loc[mine["domain"] == domain, "energy_J"].sum())
        rows.append(row)
    out = pd.DataFrame(rows)
    out["energy_per_request_J"] = out["energy_J"] / out["requests"]
    out["energy_per_output_token_J"] = out["energy_J"] / out["output_tokens"]
    for domain in ("gpu", "cpu", "dram"):
        out[f"{domain}_energy_per_request_J"] = out[f"{domain}_energy_J"] / out["requests"]
    out["latency_p50_s"] = [merged_latency_p50(clients, level) for level in common]
    dev = dev.merge(out[["level", "rate_rps", "requests"]], on="level")
    dev["energy_per_request_J"] = dev["energy_J"] / dev["requests"]
    return out, dev.drop(columns="requests")


def merged_latency_p50(clients: list[Path], level: int) -> float:
    """Median latency of the answered requests of one level over all clients."""
    frames = [pd.read_csv(c / "requests.csv") for c in clients]
    lat = pd.concat([f.loc[f["level"] == level, "latency_s"] for f in frames])
    return float(lat.dropna().median()) if lat.notna().any() else float("nan")


def run_replicas(args: argparse.Namespace, n: int, model_dir: Path, out: Path) -> dict[str, Any]:
    total = rates(args, "replicas")
    device = "cpu" if args.smoke else "cuda"
    dtype = "float32" if args.smoke else "bfloat16"
    extra = tuple(args.server_args.split()) + (("--cb-num-blocks", "64", "--cb-block-size", "32") if args.smoke else ())
    with ExitStack() as stack:
        servers = [TransformersServer(model_dir, device=device, dtype=dtype, extra_args=extra,
                                      env=None if args.smoke else {"CUDA_VISIBLE_DEVICES": str(i)},
                                      log_path=out / f"serve_gpu{i}.log", start_timeout_s=300) for i in range(n)]
        for s in servers:
            stack.callback(s.stop)
        with ThreadPoolExecutor(n) as pool:  # started together: the loads overlap
            list(pool.map(TransformersServer.start, servers))
        print(f"[multi_gpu_genai] {n} replicas up", flush=True)
        prepare_tracking(args, f"multi-gpu-genai-{out.name}")
        dirs = [out / f"client_gpu{i}" for i in range(n)]
        procs = [client(s.url, s.model, [r / n for r in total], args, d, seed=i,
                        visible=None if args.smoke else str(i)) for i, (s, d) in enumerate(zip(servers, dirs))]
        codes = [p.wait() for p in procs]
    if any(not (d / "devices.csv").is_file() for d in dirs):
        sys.exit(f"a client finished no level (exit codes {codes}); see its output above")
    levels, devices = combine_replicas(dirs)
    return {"levels": levels, "devices": devices, "exit_codes": codes, "rates_total": total}


def run_shard(args: argparse.Namespace, n: int, model_dir: Path, out: Path) -> dict[str, Any]:
    total = rates(args, "shard")
    device = "cpu" if args.smoke else "auto"
    dtype = "float32" if args.smoke else "bfloat16"
    extra = tuple(args.server_args.split())
    env = None if args.smoke else {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(n))}
    with TransformersServer(model_dir, device=device, dtype=dtype, continuous_batching=args.shard_cb,
                            extra_args=extra, env=env, log_path=out / "serve_shard.log", start_timeout_s=300) as s:
        print(f"[multi_gpu_genai] sharded server up (device_map=auto over {n} GPUs)", flush=True)
        d = out / "client"
        prepare_tracking(args, f"multi-gpu-genai-{out.name}")
        code = client(s.url, s.model, total, args, d, seed=0, visible=None if args.smoke else env["CUDA_VISIBLE_DEVICES"]
                      ).wait()
    if not (d / "devices.csv").is_file():
        sys.exit(f"the client finished no level (exit code {code}); see {out / 'serve_shard.log'}")
    levels = pd.read_csv(d / "levels.csv").assign(replicas=1)
    return {"levels": levels, "devices": pd.read_csv(d / "devices.csv"), "exit_codes": [code], "rates_total": total}


def short_table(mode: str, levels: pd.DataFrame, devices: pd.DataFrame) -> str:
    """Per rate: requests, failures, J/request, J/token and each device's J/request (Fig. 10)."""
    names = sorted(devices["device"].unique(), key=lambda d: (not d.startswith("gpu"), d))
    head = "| mode | rps | requests (failed) | J/request | J/token | p50 latency s | " + " | ".join(
        f"{d} J/req" for d in names) + " |"
    lines = [head, "|" + " --- |" * (6 + len(names))]
    for _, r in levels.sort_values("rate_rps").iterrows():
        per = devices[devices["level"] == r["level"]].set_index("device")["energy_per_request_J"]
        lines.append(f"| {mode} | {r['rate_rps']:g} | {int(r['requests'])} ({int(r['failed'])}) "
                     f"| {r['energy_per_request_J']:.2f} | {r['energy_per_output_token_J']:.4f} "
                     f"| {r.get('latency_p50_s', float('nan')):.2f} | "
                     + " | ".join(f"{per.get(d, float('nan')):.2f}" for d in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    check_environment(args.smoke)
    n = gpu_count(args)
    for mode in args.modes:
        rates(args, mode)  # bad rates fail before the model is built
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(os.environ.get("GENAI_MODELS_DIR", "/tmp/genai_models")) / args.size
    info = build(args.size, model_dir, "cpu" if args.smoke else "cuda", "float32" if args.smoke else "bfloat16")
    print(f"[multi_gpu_genai] {args.size}: {info['parameters'] / 1e9:.3f} B parameters", flush=True)
    tables, record = [], {"args": vars(args), "gpus": n, "model": info, "versions": versions(), "modes": {}}
    for mode in args.modes:
        folder = out / mode
        folder.mkdir(parents=True, exist_ok=True)
        res = (run_replicas if mode == "replicas" else run_shard)(args, n, model_dir, folder)
        res["levels"].to_csv(folder / "levels.csv", index=False)
        res["devices"].to_csv(folder / "devices.csv", index=False)
        plot_devices(res["devices"], folder / "device_energy_per_request.png",
                     f"{args.size}, {mode} over {n} {'CPU replicas' if args.smoke else 'GPUs'}")
        record["modes"][mode] = {"exit_codes": res["exit_codes"], "rates_total": res["rates_total"],
                                 "levels": res["levels"].to_dict("records")}
        tables.append(short_table(mode, res["levels"], res["devices"]))
        if any(res["exit_codes"]):
            tables.append(f"{mode}: a client exited with {res['exit_codes']} (its levels above are those it finished)")
    record["seconds"] = time.monotonic() - start
    (out / "multi_gpu_genai.json").write_text(json.dumps(record, indent=2, default=str))
    print("\n".join(tables), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
