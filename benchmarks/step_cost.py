"""What green_mlops spends per logged step, with no training beside it (issue #16): CPU by thread and process, memory.

``metered_training`` (the plain-loop API: the same meter, step stream, writer and delivery process as the
Lightning callback) is driven at a fixed rate of steps a second for a number of seconds, every step
logged to an MLflow run: on a SQLite store, and on an ``mlflow server`` (``--server URI``, or ``auto`` to
start one on 127.0.0.1). The CPU time of each green_mlops thread (sampler, step stream, writer, ack
reader) and of the delivery process over those steps, read from Linux's schedstat, divided by the steps;
the delivery process's unique memory (USS) and the training process's growth in RSS. Without a model
to train, nothing else competes: these are green_mlops' own costs, and rate × cost is its share of a core.
The sampler's cost is per second of run (it reads the meters every 0.1 s), so per step it falls as the
rate rises; the stream's, the writer's and the delivery process's are per step.

    PYTHONPATH=. python3 benchmarks/step_cost.py [--rates 250,1000] [--seconds 10] [--server auto]

Prints the table last; writes $OUT/step_cost.json (default ``bench_out``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def measure(uri: str, rate: float, seconds: float) -> dict[str, Any]:
    """Drive ``rate`` steps a second for ``seconds`` into a new run at ``uri``; CPU per step by part, memory."""
    import psutil
    from mlflow.tracking import MlflowClient

    from benchmarks.workload import children_memory, green_cpu_s
    from green_mlops.integrations.loop import metered_training

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("step-cost") or client.get_experiment(client.create_experiment("step-cost"))
    run_id = client.create_run(exp.experiment_id).info.run_id
    me = psutil.Process()
    rss0 = me.memory_info().rss
    n = int(rate * seconds)
    with metered_training(run_id=run_id, tracking_uri=uri, print_summary=False, output_dir=tempfile.mkdtemp()) as run:
        for _ in range(50):  # warm-up: the delivery process is up and has delivered once
            run.step()
            time.sleep(0.004)
        for w in run.run.sinks.writers:
            w.flush(120)
        gc.collect()  # the last measurement's garbage would be collected by whichever thread allocates next
        g0, t0 = green_cpu_s(), time.monotonic()
        for s in range(n):
            run.step()
            lag = t0 + (s + 1) / rate - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        wall = time.monotonic() - t0
        time.sleep(2.5)  # the stream publishes what is final, the writer ships it
        for w in run.run.sinks.writers:
            w.flush(120)
        g1 = green_cpu_s()
        helpers = {c["pid"]: c["uss_mb"] for c in children_memory() if c["what"].startswith("green_mlops")}
        rss = (me.memory_info().rss - rss0) / 2**20
        metrics = len(run.run.steps[-1][2]) if run.run.steps else 0
    delivered = len(client.get_metric_history(run_id, metrics and sorted(run.run.steps[-1][2])[0]))
    per_step = {k: 1e6 * (v - g0.get(k, 0.0)) / n for k, v in sorted(g1.items())}
    return {"store": uri.split(":")[0], "rate": rate, "achieved_rate": n / wall, "steps": n, "metrics_per_step": metrics,
            "cpu_us_per_step": per_step, "all_us_per_step": sum(per_step.values()),
            "helpers_uss_mb": sum(helpers.values()), "training_rss_growth_mb": rss, "steps_delivered": delivered}


def table(rows: list[dict[str, Any]]) -> str:
    parts = ["green-mlops-sampler", "green-mlops-stream", "green-mlops-writer", "green-mlops-writer-acks",
             "delivery process"]
    head = ("| store | steps/s | metrics a step | " + " | ".join(p.removeprefix("green-mlops-") for p in parts)
            + " | all, µs per logged step | share of a core | delivery process USS MB | training RSS growth MB |")
    lines = [head, "|" + " --- |" * (len(parts) + 7)]
    for r in rows:
        cpu = r["cpu_us_per_step"]
        lines.append(f"| {r['store']} | {r['rate']:g} | {r['metrics_per_step']} | "
                     + " | ".join(f"{cpu.get(p, 0.0):.1f}" for p in parts)
                     + f" | {r['all_us_per_step']:.1f} | {r['all_us_per_step'] * r['rate'] / 1e4:.2f} % "
                       f"| {r['helpers_uss_mb']:.1f} | {r['training_rss_growth_mb']:+.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="250,1000", help="steps a second, comma-separated (default 250,1000)")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per rate and store (default 10)")
    p.add_argument("--server", default=None, help="a tracking server URI, or auto to start one on 127.0.0.1")
    p.add_argument("--no-sqlite", action="store_true", help="the server only")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="folder for step_cost.json ($OUT)")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not rates or min(rates) <= 0 or args.seconds <= 0:
        p.error("--rates and --seconds must be positive")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="step-cost-"))
    uris = [] if args.no_sqlite else [f"sqlite:///{work / 'mlflow.db'}"]
    server = None
    if args.server == "auto":
        from tests.mlflow_server import MlflowServer

        server = MlflowServer(work / "server").start()
        uris.append(server.uri)
    elif args.server:
        uris.append(args.server)
    rows = []
    try:
        for uri in uris:
            for rate in rates:
                rows.append(measure(uri, rate, args.seconds))
                r = rows[-1]
                print(f"{r['store']:6s} {rate:6g} steps/s: {r['all_us_per_step']:7.1f} µs per logged step, "
                      f"{r['steps_delivered']} steps delivered", flush=True)
    finally:
        if server is not None:
            server.stop()
    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d")}
    (out / "step_cost.json").write_text(json.dumps({**info, "rows": rows}, indent=1))
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
