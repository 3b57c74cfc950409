"""``green-mlops demo``: the six-trial energy-aware search on bundled digits (no download), or with
``--meter-only`` a small built-in workload to see the meter work: an MLP on scikit-learn's digits,
each epoch a meter window (a few seconds on a CPU; on a GPU it runs there).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from green_mlops import names
from green_mlops.argtypes import interval, nonneg_seconds, positive_int
from green_mlops.extras import require
from green_mlops.meter import EnergyMeter, EnergyResult
from green_mlops.outputs import add_json_option, json_stdout, json_text, print_json

_METER_ONLY = {"epochs": 5, "idle": 2.0, "interval": 0.1}  # ``demo --meter-only`` options and their defaults


def add_arguments(d: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops demo``."""
    d.add_argument("--meter-only", action="store_true", help="instead: meter one small MLP run, epoch by epoch")
    d.add_argument("--epochs", type=positive_int, default=None,
                   help=f"--meter-only: epochs (default {_METER_ONLY['epochs']})")
    d.add_argument("--idle", type=nonneg_seconds, default=None, metavar="S",
                   help=f"--meter-only: idle baseline seconds (default {_METER_ONLY['idle']:g})")
    d.add_argument("--interval", type=interval, default=None, metavar="S",
                   help=f"--meter-only: sampling interval (default {_METER_ONLY['interval']:g} s)")
    d.add_argument("--output", default="green_mlops_demo", metavar="DIR",
                   help="where results go (default green_mlops_demo)")
    add_json_option(d, "the sweep's ranking (with --meter-only: the summary)")


def run(args: argparse.Namespace) -> int:
    """The demo search on digits (no download); ``--meter-only``: one metered run, epoch by epoch."""
    _passive_threads()
    if not args.meter_only:
        given = [f"--{k}" for k in _METER_ONLY if getattr(args, k) is not None]
        if given:
            print(f"green-mlops demo: {', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with "
                  "--meter-only (the demo search has fixed settings); add --meter-only or drop "
                  f"{'it' if len(given) == 1 else 'them'}", file=sys.stderr)
            return 2
        return demo(args.output, as_json=args.json)
    opts = {k: v if (v := getattr(args, k)) is not None else default for k, default in _METER_ONLY.items()}
    with json_stdout(args.json) as out:
        run_demo(epochs=opts["epochs"], idle_s=opts["idle"], interval=opts["interval"], output=args.output,
                 stream=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json(json.loads((Path(args.output) / "summary.json").read_text()), out)
    return 0


def _passive_threads() -> None:
    """Let PyTorch's OpenMP threads sleep at barriers instead of spinning, unless the user chose otherwise.

    On a busy machine a spinning thread burns the core its partner waits for: on 2 shared cores with
    load ~6, a MobileNet step took 3.4–4.8 s with the default policy and 0.3–0.5 s with PASSIVE. Read
    when the OpenMP runtime loads, so only before torch is imported (a test that imported it already
    keeps its setting).
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


#: The demo search: two architectures 50× apart in size, three batch sizes, the same five epochs each. SGD with
#: momentum 0.9 and lr 0.02 learns digits in about 70 steps: batch 32 and 64 (45 and 23 steps an epoch) reach
#: 0.95–0.97, LeNet at batch 128 (12 an epoch) stops near 0.89 for half the energy, and MobileNet costs ~17× LeNet's
#: energy for about the same accuracy (8×8 digits need no more capacity). ~2 min of CPU time on 2 cores.
DEMO = {"archs": "lenet,mobilenet", "batch_sizes": "32,64,128", "lr": "0.02", "momentum": "0.9", "epochs": "5"}
EXPERIMENT = "green-mlops-demo"


def demo(output: str = "green_mlops_demo", *, as_json: bool = False, max_steps: int | None = None) -> int:
    """The README's main job: a six-trial sweep on scikit-learn's digits, on whatever this machine has.

    Ends with the command that opens the MLflow UI on the results and what to click there. ``max_steps``
    caps each trial (a smoke run of the same path, for tests); ``as_json`` prints the sweep's JSON on stdout.
    """
    import time

    from green_mlops.commands import sweep

    started = time.monotonic()
    folder = Path(output).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{folder}/mlflow.db"
    parser = argparse.ArgumentParser(prog="green-mlops demo")
    sweep.add_arguments(parser)
    args = parser.parse_args(["--archs", DEMO["archs"], "--batch-sizes", DEMO["batch_sizes"], "--lrs", DEMO["lr"],
                              "--momentum", DEMO["momentum"], "--epochs", DEMO["epochs"], "--dataset", "digits",
                              "--experiment", EXPERIMENT, "--study", time.strftime("demo-%Y%m%d-%H%M%S"),
                              "--storage", f"sqlite:///{folder}/study.db", "--tracking-uri", store,
                              "--output", str(folder), *(["--max-steps", str(max_steps)] if max_steps else []),
                              *(["--json"] if as_json else [])])
    print(f"green-mlops demo: 6 trials (LeNet and MobileNet × batch 32, 64, 128) on scikit-learn's digits, "
          f"{DEMO['epochs']} epochs each (SGD lr {DEMO['lr']}, momentum {DEMO['momentum']}), every trial metered "
          "and logged to MLflow", file=sys.stderr, flush=True)
    code = sweep.run(args)
    if code == 0:
        print(f"\ngreen-mlops demo: done in {time.monotonic() - started:.0f} s.\n" + ui_steps(store, args.study),
              file=sys.stderr if as_json else sys.stdout, flush=True)
    return code


def ui_steps(store: str, study: str) -> str:
    """What to run and click to see the demo in the MLflow UI (MLflow 2.x/3.x wording)."""
    return "\n".join([
        "See it in the MLflow UI:",
        f"  mlflow ui --backend-store-uri {store}",
        "then open http://127.0.0.1:5000 and",
        f"  1. click the experiment '{EXPERIMENT}'; its run 'sweep {study}' holds the six trials (expand it,",
        "     or 'Expand rows'), and ranking.csv and pareto.png under its Artifacts;",
        f"  2. click 'Chart view' (the chart icon beside 'Table view' above the runs): val_acc, {names.ENERGY_TOTAL}",
        f"     and {names.POWER_TOTAL} of every trial, step by step;",
        f"  3. 'Add chart' → 'Scatter chart', X axis {names.LIFECYCLE_J}, Y axis accuracy: each dot a trial,",
        "     the front the upper-left edge (the most accuracy for its energy);",
        "  4. click a trial, then 'Model metrics': its energy and power per step; its Tags say how each",
        f"     energy was obtained ({names.PROVENANCE_TAG_PREFIX}*: measured or estimated; "
        f"{names.METHOD_TAG_PREFIX}*: by what)."])


def run_demo(epochs: int = 5, idle_s: float = 2.0, interval: float = 0.1,
             output: str | Path = "green_mlops_demo", stream=sys.stdout) -> EnergyResult:
    """Train for ``epochs``, print energy per epoch and in total, write the trace and a JSON summary."""
    import torch

    require("demo")
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32, device=device)
    y = torch.tensor(y, dtype=torch.long, device=device)
    n_train = int(0.8 * len(x))
    model = torch.nn.Sequential(torch.nn.Linear(64, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    meter = EnergyMeter(interval=interval, name="demo")
    print(f"demo: {epochs} epochs of an MLP on digits ({n_train} training images) on {device}", file=stream)
    if idle_s:
        print(f"demo: measuring idle power for {idle_s:g} s ...", file=stream)
        meter.measure_idle(idle_s)
    rows = []
    with meter:
        for epoch in range(1, epochs + 1):
            with meter.window(f"epoch {epoch}") as w:
                model.train()
                perm = torch.randperm(n_train, device=device)
                for _ in range(20):
                    for i in range(0, n_train, 64):
                        idx = perm[i:i + 64]
                        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                model.eval()
                with torch.no_grad():
                    acc = (model(x[n_train:]).argmax(1) == y[n_train:]).float().mean().item()
                if device == "cuda":
                    torch.cuda.synchronize()
            rows.append((epoch, acc, w))
    result = meter.result()
    for epoch, acc, w in rows:
        r = w.result()
        net = r.net_J
        print(f"epoch {epoch}: accuracy {acc:.3f}  {r.duration_s:5.2f} s  {r.total_J:8.1f} J"
              + (f"  net {net:8.1f} J" if net is not None else ""), file=stream)
    print("\n" + result.table(), file=stream)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    meter.export_trace(out / "trace.parquet")
    summary = {"result": result.as_dict(), "epochs": [{"epoch": e, "accuracy": a, **w.result().as_dict()}
                                                        for e, a, w in rows],
               "findings": [f.as_dict() for f in meter.findings]}
    (out / "summary.json").write_text(json_text(summary))
    print(f"\ndemo: wrote {out / 'trace.parquet'} and {out / 'summary.json'}", file=stream)
    return result
