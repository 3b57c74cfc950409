"""``green-mlops demo``: the six-trial energy-aware search on bundled digits (no download), or with
``--meter-only`` a small built-in workload to see the meter work: an MLP on scikit-learn's digits,
each epoch a meter window (a few seconds on a CPU; on a GPU it runs there).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from green_mlops.argtypes import interval, nonneg_seconds, positive_int
from green_mlops.extras import require
from green_mlops.meter import EnergyMeter, EnergyResult

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


def run(args: argparse.Namespace) -> int:
    """The demo search on digits (no download); ``--meter-only``: one metered run, epoch by epoch."""
    if not args.meter_only:
        given = [f"--{k}" for k in _METER_ONLY if getattr(args, k) is not None]
        if given:
            print(f"green-mlops demo: {', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with "
                  "--meter-only (the demo search has fixed settings); add --meter-only or drop "
                  f"{'it' if len(given) == 1 else 'them'}", file=sys.stderr)
            return 2
        return demo(args.output)
    opts = {k: v if (v := getattr(args, k)) is not None else default for k, default in _METER_ONLY.items()}
    run_demo(epochs=opts["epochs"], idle_s=opts["idle"], interval=opts["interval"], output=args.output)
    return 0


DEMO_ARGS = ["--archs", "lenet,mobilenet,resnet18", "--batch-sizes", "64,128", "--lrs", "0.05", "--momentum", "0.9",
             "--epochs", "2", "--dataset", "digits", "--experiment", "green-mlops-demo"]


def demo(output: str = "green_mlops_demo") -> int:
    """The README's main job: a six-trial sweep on scikit-learn's digits, on whatever this machine has.

    Uses the paper's SGD with a higher learning rate and momentum, so that two epochs on 1,437 images
    separate the architectures' accuracy; a fresh study each time, stored beside the MLflow store.
    """
    import time

    from green_mlops.commands import sweep

    folder = Path(output).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    parser = argparse.ArgumentParser(prog="green-mlops demo")
    sweep.add_arguments(parser)
    args = parser.parse_args([*DEMO_ARGS, "--study", time.strftime("demo-%Y%m%d-%H%M%S"),
                              "--storage", f"sqlite:///{folder}/study.db", "--tracking-uri",
                              f"sqlite:///{folder}/mlflow.db", "--output", str(folder)])
    print("green-mlops demo: 6 trials (LeNet, MobileNet, ResNet18 × batch 64, 128) on scikit-learn's digits, "
          "2 epochs each, every trial metered and logged to MLflow", file=sys.stderr, flush=True)
    return sweep.run(args)





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
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\ndemo: wrote {out / 'trace.parquet'} and {out / 'summary.json'}", file=stream)
    return result
