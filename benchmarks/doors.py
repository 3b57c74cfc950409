"""Every door into green_mlops on a short-step workload (issue #13): does any of them cost throughput?

The workload: a small MLP (784→256→256→10) on batches of 64 made once, so that a step takes a few
milliseconds on a GPU (≥ 250 steps/s) and every step is logged: the per-step cost of a door shows in full.
Doors, each run bare (no green_mlops) and metered, interleaved in rounds whose order alternates
(``benchmarks/overhead.py``'s scheme), throughput of each metered door paired with its own bare run:

  pl          pytorch_lightning.Trainer  + green_mlops.lightning.EnergyCallback, MLFlowLogger on SQLite
  lightning   lightning.pytorch.Trainer  + the same callback, lightning's MLFlowLogger on SQLite
  loop        a hand-written loop        + green_mlops.metered_training, inside mlflow.start_run()
  hf          transformers.Trainer       + green_mlops.transformers.EnergyCallback into its own MLflow run

Throughput is timed from the step after ``--warmup`` to the last (the time of each optimiser step is
taken inside the step, the same way for every door). Target: every metered door ≥ 0.99× its bare run.

    PYTHONPATH=. python3 benchmarks/doors.py [--rounds 8] [--steps 600] [--doors pl,lightning,loop,hf]
    PYTHONPATH=. python3 benchmarks/doors.py --accelerator cpu --steps 8 --warmup 2 --rounds 1   # smoke run
    PYTHONPATH=. python3 benchmarks/doors.py --merge call1/doors.json call2/doors.json --out pooled

``--budget-s`` starts no round that would end past it (one device call is ≤ 10 minutes); ``--merge`` pools the
rounds of several calls with the same steps and warm-up, each round still paired within itself.

Prints the table last; writes details to $OUT/doors.json (default ``bench_out``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.overhead import interleaved, median_ci, verdict

DOORS = ("pl", "lightning", "loop", "hf")
STORE = ["sqlite:///doors.db"]  # one MLflow store per invocation (its schema is made once), set by main


def _data(steps: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    pool = [(torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(16)]
    return [(x.to(device), y.to(device)) for x, y in (pool[i % len(pool)] for i in range(steps))]


def _mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 10))


def _lightning_fit(pkg: str, metered: bool, batches: list, accel: str, workdir: str, stamps: list[float]) -> None:
    pl = importlib.import_module(pkg)
    loggers = importlib.import_module(f"{pkg}.loggers")
    sync = torch.cuda.synchronize if accel != "cpu" else (lambda: None)

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            sync()
            stamps.append(time.perf_counter())
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    callbacks, logger = [], False
    if metered:
        from green_mlops.lightning import EnergyCallback

        callbacks = [EnergyCallback()]
        logger = loggers.MLFlowLogger(experiment_name=f"doors-{pkg}", tracking_uri=STORE[0])
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu" if accel == "cpu" else "gpu", devices=1, logger=logger,
                         callbacks=callbacks, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(MLP(), torch.utils.data.DataLoader(batches, batch_size=None))  # each item is a whole batch


def _loop_fit(metered: bool, batches: list, accel: str, workdir: str, stamps: list[float]) -> None:
    import contextlib

    import mlflow

    from green_mlops import metered_training

    device = "cpu" if accel == "cpu" else "cuda"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    model = _mlp().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mlflow.set_tracking_uri(STORE[0])
    run_ctx = mlflow.start_run() if metered else contextlib.nullcontext()
    with run_ctx, (metered_training() if metered else contextlib.nullcontext()) as run:
        for x, y in batches:
            sync()
            stamps.append(time.perf_counter())
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if run is not None:
                run.step()


def _hf_fit(metered: bool, batches: list, accel: str, workdir: str, stamps: list[float]) -> None:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": torch.nn.functional.cross_entropy(self.net(x), labels)}

    class Stamp(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if accel != "cpu":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    rows = [{"x": x.cpu()[i], "labels": y.cpu()[i]} for x, y in batches for i in range(len(x))]
    callbacks: list[Any] = [Stamp()]
    if metered:
        from green_mlops.transformers import EnergyCallback

        callbacks.append(EnergyCallback(tracking_uri=STORE[0], experiment="doors-hf"))
    args = TrainingArguments(output_dir=f"{workdir}/hf", per_device_train_batch_size=64, max_steps=len(batches),
                             logging_steps=1, report_to="none", save_strategy="no",
                             disable_tqdm=True, use_cpu=accel == "cpu", dataloader_num_workers=0, learning_rate=0.01)
    Trainer(model=Net(), args=args, train_dataset=rows, callbacks=callbacks).train()


def one_fit(door: str, metered: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One fit through ``door``; steps/s over the steps after the warm-up."""
    device = "cpu" if args.accelerator == "cpu" else "cuda"
    batches = _data(args.steps + args.warmup, device if door != "hf" else "cpu")
    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="doors_") as workdir:
        if door in ("pl", "lightning"):
            _lightning_fit("pytorch_lightning" if door == "pl" else "lightning.pytorch", metered, batches,
                           args.accelerator, workdir, stamps)
        elif door == "loop":
            _loop_fit(metered, batches, args.accelerator, workdir, stamps)
        else:
            _hf_fit(metered, batches, args.accelerator, workdir, stamps)
    timed = stamps[args.warmup:]
    rate = (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 and timed[-1] > timed[0] else None
    return {"door": door, "metered": metered, "steps": len(stamps), "steps_per_s": rate}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="gpu", help="gpu (default) or cpu for a smoke run")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    p.add_argument("--steps", type=int, default=600, help="timed optimiser steps per fit (default 600)")
    p.add_argument("--warmup", type=int, default=50, help="untimed steps first (default 50)")
    p.add_argument("--doors", default=",".join(DOORS), help=f"comma-separated doors from {', '.join(DOORS)}")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="start no round that would end later than this after launch (default 540; 0: no limit)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="pool the rounds of earlier calls' doors.json files into one summary in --out; no training")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="folder for doors.json ($OUT)")
    args = p.parse_args(argv)
    if args.merge:
        return args
    args.doors = [d.strip() for d in args.doors.split(",") if d.strip()]
    unknown = [d for d in args.doors if d not in DOORS]
    if unknown or not args.doors:
        p.error(f"unknown door(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(DOORS)}")
    if args.accelerator not in ("gpu", "cuda", "cpu"):
        p.error("--accelerator must be gpu, cuda or cpu")
    if args.accelerator != "cpu" and not torch.cuda.is_available() and not args.merge:
        p.error(f"--accelerator {args.accelerator} needs a CUDA GPU and none is visible here; use --accelerator cpu")
    if args.rounds < 1 or args.steps < 2 or args.warmup < 0:
        p.error("--rounds ≥ 1, --steps ≥ 2 and --warmup ≥ 0")
    return args


def summarise(rows: list[dict[str, Any]], doors: list[str]) -> dict[str, dict[str, Any]]:
    """Per door: metered/bare throughput paired within each round, median with its bootstrap 95 % CI."""
    by_round: dict[Any, dict[tuple[str, bool], float | None]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[(row["door"], row["metered"])] = row["steps_per_s"]
    ratios = {d: [rd[(d, True)] / rd[(d, False)] for rd in by_round.values()
                  if rd.get((d, True)) and rd.get((d, False))] for d in doors}
    return {d: {"ratio": median_ci(v) if v else None, "rounds": len(v), "ratio_per_round": v}
            for d, v in ratios.items()}


def merge(paths: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The rounds of several calls' doors.json, renumbered per call; refuses calls of other steps or warm-up."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    keys = {(d["args"]["steps"], d["args"]["warmup"], d["args"]["accelerator"]) for d in docs}
    if len(keys) > 1:
        raise SystemExit(f"--merge: these calls differ in steps, warm-up or accelerator: {sorted(keys)}")
    rows = [{**r, "round": i * 100_000 + r["round"], "call": p} for i, (p, d) in enumerate(zip(paths, docs))
            for r in d["rows"]]
    doors = list(dict.fromkeys(door for d in docs for door in d["summary"]))
    return {**docs[0]["args"], "merged": paths}, rows, doors


def main(argv: list[str] | None = None) -> int:
    t0 = time.monotonic()
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        info, rows, doors = merge(args.merge)
    else:
        info, rows, doors = {k: v for k, v in vars(args).items()}, run_rounds(args, out, t0), args.doors
    summary = summarise(rows, doors)
    (out / "doors.json").write_text(json.dumps({"args": info, "rows": rows, "summary": summary}, indent=2,
                                               default=str))
    lines = [f"{len({r['round'] for r in rows})} rounds; door  metered/bare throughput (median, 95 % CI)   verdict"]
    for d, s in summary.items():
        ratio = s["ratio"]
        text = "n/a" if ratio is None else f"{ratio[0]:.3f} ({ratio[1] or float('nan'):.3f}–{ratio[2] or float('nan'):.3f})"
        lines.append(f"{d:<11} {text:<39} {verdict(ratio) if ratio else 'n/a'}")
    print("\n".join(lines))
    return 0


def run_rounds(args: argparse.Namespace, out: Path, t0: float) -> list[dict[str, Any]]:
    """Every door bare and metered per round, in alternating order, while rounds fit in ``--budget-s``."""
    STORE[0] = f"sqlite:///{out.resolve() / 'doors.db'}"
    kinds = [f"{d}:{m}" for d in args.doors for m in ("bare", "energy")]

    def fit(kind: str) -> dict[str, Any]:
        door, mode = kind.split(":")
        row = one_fit(door, mode == "energy", args)
        print(f"{kind:16s} {row['steps_per_s'] or float('nan'):7.1f} steps/s", flush=True)
        return row

    rows = interleaved(kinds, args.rounds, args.budget_s, t0, fit)
    return rows

if __name__ == "__main__":
    sys.exit(main())
