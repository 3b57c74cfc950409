"""The paper's discriminative measurements (issues #17, #20): the zoo on learnable data, repeated, net of idle.

Parts: ``grid`` = the sixteen architectures × batch sizes 64, 128, 256 (also the reference grid of issue #20's
search-efficiency benchmark); ``batches`` = LeNet, ResNet18, MobileNetV2, VGG16 × batch 32 and 512 (with the
grid's 64–256 they make the paper's batch-size series). Each trial, in one process that builds the data once:
an idle baseline, one training epoch of 50k ``digits50k`` samples (validation on 10k held-out samples inside
the fit, as Lightning does), inference over 50k (the held-out set ×5, the paper's protocol), accuracy on the
held-out set. Round r trains with seed r and runs the part's configurations in an order shuffled by r, so drift
does not line up with architecture. ``--configs A:B`` runs a slice of that order (a round split over calls),
``--budget-s`` stops before a trial that would end past it, ``--merge`` joins the CSVs of several calls.

    PYTHONPATH=. python3 benchmarks/zoo.py --part grid --first-round 0 --rounds 1 --configs 0:24 --budget-s 540
    PYTHONPATH=. python3 benchmarks/zoo.py --merge results/h200/zoo/zoo-*.csv --out results/h200/zoo/runs.csv
    PYTHONPATH=. python3 benchmarks/zoo.py --accelerator cpu --samples 512 --archs lenet,mobilenet --max-steps 2  # smoke

Writes to ``--out-dir`` (default ``$OUT`` or bench_out): ``zoo-<tag>.csv`` (one row per trial, columns below),
``zoo-<tag>-stores.tar.gz`` (the MLflow SQLite store and the Optuna study of this call) and ``zoo-<tag>.log``.

runs.csv columns (one row per trial; energies in J, power in W, time in s; ``train_*`` = the fit window, which
holds the training epoch and its validation pass, ``time/fit_s``; ``inference_*`` = the predict window):
  part, round, seed, config_index, order_in_round, arch, batch_size, lr, momentum, weight_decay, dataset,
  train_samples, val_samples, inference_samples, idle_seconds, status, error, accuracy (held-out), steps,
  samples_seen (training samples of the fit: train_samples unless --max-steps cut it),
  train_time_s, train_J, train_{gpu,cpu,dram}_J, train_net_J, train_{gpu,cpu,dram}_net_J, train_loop_J
  (training loop only, validation excluded), train_J_per_sample (= train_loop_J / samples_seen),
  train_net_J_per_sample (= train_net_J / samples_seen: the fit window, validation included),
  inference_time_s, inference_J, inference_{gpu,cpu,dram}_J, inference_net_J, inference_{gpu,cpu,dram}_net_J,
  inference_J_per_sample, inference_net_J_per_sample,
  idle_total_W, idle_{gpu,cpu,dram}_W (the trial's baseline; net = gross − idle W × the window's time),
  macs, flops, total_params, trainable_params, model_size_bytes, buffer_bytes, macs_param,
  method_gpu, method_cpu, method_dram ("measured:nvml-energy-counter", "estimated:tdp-utilisation-model", ...),
  gpu_name, gpu_driver, cpu_model, host, started_utc, mlflow_run_id, code_version.
"""
from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

ARCHS = ("simpledla,dpn26,densenet121,efficientnetb0,googlenet,lenet,mobilenet,mobilenetv2,pnasnet,"
         "preactresnet18,regnetx_200mf,resnet18,resnext29_2x64d,senet18,shufflenetv2,vgg16").split(",")
PARTS = {"grid": (ARCHS, (64, 128, 256)), "batches": ("lenet,resnet18,mobilenetv2,vgg16".split(","), (32, 512))}
DOMAINS = ("gpu", "cpu", "dram")


def configs(part: str, archs: list[str] | None = None, batch_sizes: list[int] | None = None) -> list[tuple[str, int]]:
    """The part's configurations in a fixed canonical order (the index is stable across calls)."""
    a, b = PARTS[part]
    return [(arch, bs) for arch in (archs or a) for bs in (batch_sizes or b)]


def round_order(n: int, round_: int) -> list[int]:
    """Configuration indices in the order round ``round_`` runs them: shuffled by the round's seed."""
    order = list(range(n))
    random.Random(1000 + round_).shuffle(order)
    return order


def _slice(spec: str | None, n: int) -> slice:
    if not spec:
        return slice(0, n)
    try:
        a, b = (int(x) if x else None for x in spec.split(":"))
    except ValueError:
        raise SystemExit(f"--configs takes START:END positions in the round's order (e.g. 0:24); got {spec!r}") from None
    return slice(a, b)


def _code_version() -> str:
    if os.environ.get("GREEN_MLOPS_COMMIT"):
        return os.environ["GREEN_MLOPS_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def row_from(outcome: Any, fit: dict[str, float], inf: dict[str, float]) -> dict[str, Any]:
    """The energy, time and model columns of one trial from its TrainOutcome and end-of-stage metrics."""
    from green_mlops import names

    row: dict[str, Any] = {"accuracy": outcome.val_accuracy, "steps": outcome.steps,
                           "train_time_s": fit.get("time/fit_s"), "train_J": fit.get("energy/fit_J"),
                           "inference_time_s": inf.get("time/predict_s"), "inference_J": inf.get("energy/predict_J")}
    for side, stage, m in (("train", "fit", fit), ("inference", "predict", inf)):
        row[f"{side}_net_J"] = m.get(f"energy/{stage}_net_J")
        for d in DOMAINS:
            row[f"{side}_{d}_J"] = m.get(f"energy/{stage}_{d}_J")
            row[f"{side}_{d}_net_J"] = m.get(f"energy/{stage}_{d}_net_J")
    per_sample, seen = fit.get(names.metric(names.ENERGY_PER_SAMPLE_TRAIN)), outcome.samples_seen
    row["samples_seen"] = seen
    row["train_loop_J"] = per_sample * seen if per_sample is not None else None
    row["train_J_per_sample"] = per_sample
    row["train_net_J_per_sample"] = row["train_net_J"] / seen if row["train_net_J"] is not None and seen else None
    row["inference_J_per_sample"] = inf.get(names.metric(names.ENERGY_PER_SAMPLE_INFERENCE))
    n_inf = outcome.inference_samples
    row["inference_net_J_per_sample"] = row["inference_net_J"] / n_inf if row["inference_net_J"] is not None and n_inf else None
    row["idle_total_W"] = fit.get("power/idle_total_W")
    for d in DOMAINS:
        row[f"idle_{d}_W"] = fit.get(f"power/idle_{d}_W")
    model = outcome.model
    for k in ("macs", "flops", "total_params", "trainable_params", "model_size_bytes", "buffer_bytes"):
        row[k] = model.get(k)
    row["macs_param"] = fit.get(names.metric("macs_param"))
    for d in DOMAINS:
        row[f"method_{d}"] = outcome.methods.get(d, "none")
    return row


def _warm_up(accelerator: str) -> None:
    """CUDA context, cuDNN and cuBLAS handles made before the first trial, so it does not pay for them alone."""
    import torch

    if accelerator == "cpu" or not torch.cuda.is_available():
        return
    conv = torch.nn.Conv2d(3, 16, 3).cuda()
    for _ in range(3):
        conv(torch.randn(64, 3, 32, 32, device="cuda")).sum().backward()
    torch.cuda.synchronize()


class Runner:
    """Runs trials in one process: the dataset is built once; each trial is one MLflow run and one Optuna trial."""

    def __init__(self, args: argparse.Namespace, out: Path, tag: str) -> None:
        import optuna

        from green_mlops.mlflow.context import hardware_tags
        from green_mlops.training.data import load_data

        self.args, self.out, self.tag = args, out, tag
        self.store = out / f"zoo-{tag}-mlflow.db"
        self.study_db = out / f"zoo-{tag}-study.db"
        n_val = max(args.samples // 5, 10)
        self.data_options = {"train_samples": args.samples, "val_samples": n_val}
        t0 = time.monotonic()
        self.data = load_data(args.dataset, seed=0, **self.data_options) if args.dataset == "digits50k" else \
            load_data(args.dataset, seed=0, train_samples=args.samples, val_samples=n_val,
                      inference_samples=args.samples)
        print(f"data: {self.data.description} ({time.monotonic() - t0:.1f} s)", flush=True)
        self.hw = hardware_tags()
        _warm_up(args.accelerator)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(study_name=f"zoo-{args.part}", storage=f"sqlite:///{self.study_db}",
                                         directions=["maximize", "minimize"], load_if_exists=True)
        self.code = _code_version()

    def trial(self, part: str, round_: int, index: int, position: int, arch: str, bs: int) -> dict[str, Any]:
        import optuna
        from pytorch_lightning.loggers import MLFlowLogger

        from green_mlops.training import TrainConfig, train_and_measure

        a = self.args
        base = {"part": part, "round": round_, "seed": round_, "config_index": index, "order_in_round": position,
                "arch": arch, "batch_size": bs, "lr": a.lr, "momentum": a.momentum, "weight_decay": 5e-4,
                "dataset": a.dataset, "train_samples": len(self.data.train), "val_samples": len(self.data.val),
                "inference_samples": len(self.data.inference), "idle_seconds": a.idle,
                "gpu_name": self.hw.get("green_mlops.hw.gpu_names", ""), "gpu_driver": self.hw.get("green_mlops.hw.gpu_driver", ""),
                "cpu_model": self.hw.get("green_mlops.hw.cpu_model", ""), "host": socket.gethostname(),
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "code_version": self.code}
        options = self.data_options if a.dataset == "digits50k" else {
            "train_samples": a.samples, "val_samples": len(self.data.val), "inference_samples": a.samples}
        config = TrainConfig(arch=arch, batch_size=bs, lr=a.lr, momentum=a.momentum, seed=round_, dataset=a.dataset,
                             max_steps=a.max_steps, accelerator=a.accelerator, idle_seconds=a.idle,
                             data_options=options, output_dir=str(self.out / "lightning"))
        logger = MLFlowLogger(experiment_name="zoo", tracking_uri=f"sqlite:///{self.store}",
                              run_name=f"{arch} bs{bs} r{round_}",
                              tags={**self.hw, "zoo.part": part, "zoo.round": str(round_),
                                    "zoo.config_index": str(index), "zoo.order_in_round": str(position)})
        trial = self.study.ask({})
        for k, v in (("arch", arch), ("batch_size", bs), ("round", round_)):
            trial.set_user_attr(k, v)
        try:
            o = train_and_measure(config, logger=logger, data=self.data)
        except Exception as exc:  # one configuration failing (e.g. out of memory) must not end the rest
            traceback.print_exc()
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        fit = o.summaries["fit"].get("metrics", {})
        inf = o.summaries.get("inference", {}).get("metrics", {})
        row = {**base, "status": o.status, "error": "", **row_from(o, fit, inf),
               "mlflow_run_id": o.run_id}
        trial.set_user_attr("mlflow_run_id", o.run_id)
        for k in ("train_net_J", "inference_net_J", "train_time_s", "inference_time_s"):
            trial.set_user_attr(k, row[k])
        lifecycle = (row["train_net_J"] or 0.0) + (row["inference_net_J"] or 0.0)
        self.study.tell(trial, [o.val_accuracy if o.val_accuracy is not None else 0.0, lifecycle])
        return row


def run(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    archs = args.archs.split(",") if args.archs else None
    batches = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else None
    space = configs(args.part, archs, batches)
    sl = _slice(args.configs, len(space))
    last = args.first_round + args.rounds - 1
    tag = f"{args.part}-r{args.first_round}" + (f"-{last}" if last != args.first_round else "") + \
        (f"-c{sl.start or 0}-{sl.stop if sl.stop is not None else len(space)}" if args.configs else "")
    runner = Runner(args, out, tag)
    rows: list[dict[str, Any]] = []
    csv = out / f"zoo-{tag}.csv"
    t0 = time.monotonic()
    longest = 0.0
    stopped = None
    try:
        for r in range(args.first_round, last + 1):
            order = round_order(len(space), r)
            for position in range(len(order))[sl]:
                index = order[position]
                arch, bs = space[index]
                elapsed = time.monotonic() - t0
                if args.budget_s and elapsed + max(1.3 * longest, args.trial_max_s) > args.budget_s:
                    stopped = (r, position)
                    break
                print(f"[{elapsed:6.0f} s] round {r} #{position} config {index}: {arch} bs{bs}", flush=True)
                t = time.monotonic()
                row = runner.trial(args.part, r, index, position, arch, bs)
                rows.append(row)
                longest = max(longest, time.monotonic() - t)
                pd.DataFrame(rows).to_csv(csv, index=False)  # after every trial: a later fault loses nothing
                print(f"         {row['status']}: accuracy {row.get('accuracy')}, fit {row.get('train_time_s')} s, "
                      f"predict {row.get('inference_time_s')} s, trial {time.monotonic() - t:.0f} s", flush=True)
            if stopped:
                break
    finally:
        with tarfile.open(out / f"zoo-{tag}-stores.tar.gz", "w:gz") as tar:
            for p in (runner.store, runner.study_db):
                if p.exists():
                    tar.add(p, arcname=p.name)
        for p in (runner.store, runner.study_db):
            p.unlink(missing_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(csv, index=False)
    if stopped:
        print(f"stopped by --budget-s {args.budget_s:g} before round {stopped[0]} position {stopped[1]}: "
              f"continue with --first-round {stopped[0]} --configs {stopped[1]}:{sl.stop or ''}", flush=True)
    print(f"{len(df)} trials in {time.monotonic() - t0:.0f} s → {csv}", flush=True)
    print(table(df))
    return 0 if len(df) and (df["status"] != "failed").all() else 1


def table(df: pd.DataFrame) -> str:
    """The short table printed last: per trial, accuracy, time and net energy per sample."""
    if df.empty:
        return "(no trials)"
    cols = ["round", "arch", "batch_size", "accuracy", "train_time_s", "train_net_J_per_sample",
            "inference_time_s", "inference_net_J_per_sample", "idle_total_W", "status"]
    show = df[[c for c in cols if c in df]].sort_values(["arch", "batch_size", "round"])
    return show.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def merge(paths: list[str], out: str) -> int:
    """Join the CSVs of several calls into one runs.csv; a (part, round, config) run twice keeps its last row."""
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    df = df.drop_duplicates(["part", "round", "config_index"], keep="last")
    df = df.sort_values(["part", "round", "order_in_round"]).reset_index(drop=True)
    df.to_csv(out, index=False)
    for (part, r), g in df.groupby(["part", "round"]):
        n = len(configs(part))
        missing = sorted(set(range(n)) - set(g["config_index"]))
        print(f"{part} round {r}: {len(g)}/{n} configurations" + (f"; missing order positions "
              f"{sorted(round_order(n, r).index(i) for i in missing)}" if missing else ""))
    print(f"{len(df)} runs → {out}")
    print(table(df))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=list(PARTS), default="grid")
    p.add_argument("--dataset", default="digits50k", help="digits50k (default), or synthetic for energy only")
    p.add_argument("--samples", type=int, default=50_000, help="training and inference samples per trial; the "
                   "validation set is a fifth of it (default 50000: the paper's)")
    p.add_argument("--first-round", type=int, default=0, help="number of the first round (its seed and order)")
    p.add_argument("--rounds", type=int, default=1, help="rounds (repeats) to run in this call (default 1)")
    p.add_argument("--configs", default=None, metavar="A:B", help="only positions A..B-1 of each round's order")
    p.add_argument("--budget-s", type=float, default=None, help="start no trial that would end past this many s")
    p.add_argument("--trial-max-s", type=float, default=90.0, help="--budget-s assumes a trial may take this long "
                   "(or 1.3 × the longest so far, if more)")
    p.add_argument("--archs", default=None, help="comma-separated subset of the part's architectures (smoke runs)")
    p.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes instead of the part's")
    p.add_argument("--idle", type=float, default=3.0, help="idle baseline seconds before each trial (default 3)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9: one epoch learns)")
    p.add_argument("--max-steps", type=int, default=None, help="cap optimiser steps (smoke runs)")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--out-dir", default=os.environ.get("OUT", "bench_out"))
    p.add_argument("--merge", nargs="+", metavar="CSV", help="no runs: join these zoo CSVs into --out")
    p.add_argument("--out", default="runs.csv", help="--merge: the joined CSV (default runs.csv)")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if args.rounds < 1 or args.samples < 10:
        raise SystemExit("--rounds must be ≥ 1 and --samples ≥ 10")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        import logging

        logging.getLogger(name).setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
