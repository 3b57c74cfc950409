"""``green-mlops sweep``: the energy-aware search over zoo architectures and batch sizes.

Composes the search (``green_mlops.search``) with the zoo, the datasets and the training module:
every worker process that runs this command with the same ``--storage`` and ``--study`` joins one study.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import MLFlowLogger

from green_mlops import names
from green_mlops.argtypes import fraction, nonneg_int, nonneg_seconds, number, or_auto, positive_int, whole
from green_mlops.commands.common import quiet_lightning
from green_mlops.outputs import add_json_option, frame_records, json_stdout, print_json
from green_mlops.redact import redact_uri
from green_mlops.search import (
    DEFAULT_STORAGE,
    MODES,
    Objective,
    SpaceError,
    StorageError,
    Sweep,
    SweepError,
    SweepReport,
    SweepSettings,
    TrialContext,
    TrialResult,
    build_space,
)
from green_mlops.search.pruning import DEFAULT_MARGIN
from green_mlops.training.data import DataBundle, DataUnavailable, load_data
from green_mlops.training.train import TrainConfig, train_and_measure


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``green-mlops sweep``."""
    space = p.add_argument_group("search space (command line or --config YAML; the command line wins)")
    space.add_argument("--archs", help="comma-separated architectures, e.g. lenet,resnet18,mobilenetv2 "
                       "(zoo names, torchvision:NAME, or package.module:factory)")
    space.add_argument("--batch-sizes", help="comma-separated batch sizes, e.g. 32,64,128")
    space.add_argument("--lrs", help="comma-separated learning rates (default 0.001, the paper's)")
    space.add_argument("--lr-range", metavar="LOW:HIGH", help="log-uniform learning-rate range (needs --n-trials)")
    space.add_argument("--config", metavar="YAML", help="space file with archs, batch_sizes, lrs or lr_range")
    space.add_argument("--list-archs", action="store_true", help="print the zoo's architectures and exit")
    train = p.add_argument_group("training of each trial")
    train.add_argument("--dataset", default="digits", help="digits (default, bundled, no download), digits50k (digits augmented to 50k), cifar10 or "
                       "synthetic")
    train.add_argument("--data-dir", default=None, help="where cifar10 is (or goes with --download)")
    train.add_argument("--download", action="store_true", help="download cifar10 if it is not in --data-dir")
    train.add_argument("--synthetic-samples", type=positive_int, default=None, help="synthetic only: training and "
                       "inference samples (default 50000 each, the paper's)")
    train.add_argument("--epochs", type=positive_int, default=1, help="training epochs per trial (default 1)")
    train.add_argument("--max-steps", type=nonneg_int, default=None, help="cap on optimiser steps per trial (default: none, "
                       "every epoch runs in full; 0 also means none)")
    train.add_argument("--idle-seconds", type=nonneg_seconds, default=0.0, help="idle baseline before each trial, s")
    train.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto, cpu, gpu)")
    train.add_argument("--momentum", type=number(positive=False, example="0.9"), default=0.0, help="SGD momentum (default 0, the paper's)")
    train.add_argument("--seed", type=nonneg_int, default=0, help="seed of the model, the data split and the sampler")
    obj = p.add_argument_group("objective")
    obj.add_argument("--mode", choices=MODES, default="pareto", help="pareto (default): accuracy vs lifecycle "
                     "energy; acc-per-kj; penalty: accuracy − λ·kWh")
    obj.add_argument("--penalty-per-kwh", type=number(positive=False, example="100"), default=None, metavar="λ",
                     help="--mode penalty only, and required there: accuracy given up per kWh of lifecycle energy. "
                     "Scale it to your trials: at 1 kJ each (0.00028 kWh), λ = 100 costs 0.028 accuracy")
    obj.add_argument("--inference-samples", type=nonneg_int, default=None, help="expected serving volume: lifecycle "
                     "energy = training + inference per sample × this (default: the inference set once)")
    obj.add_argument("--energy-budget-J", type=number(positive=True, example="5000"), default=None, dest="energy_budget_J",
                     help="stop a trial whose predicted energy exceeds this; it is marked infeasible "
                     "(default: no budget)")
    obj.add_argument("--profile-steps", type=positive_int, default=20, help="steps profiled before the first prediction")
    aware = p.add_argument_group("energy-aware search (docs/search.md: the rules, and where each decision is kept)")
    aware.add_argument("--prune", action="store_true", help="stop a trial at a validation when a finished trial "
                       "is at least as accurate as its best case for its projected energy or less")
    aware.add_argument("--prune-margin", type=or_auto(fraction(example="0.05")), default=DEFAULT_MARGIN,
                       help="accuracy a trial is granted still to gain: auto = the most any finished trial of the "
                       "study gained after the same share of its steps, with ties the validation set cannot "
                       "resolve going to the cheaper trial; or a fixed gain, e.g. 0.05 (default %(default)s)")
    aware.add_argument("--prune-every", type=fraction(open_low=True, example="0.25"), default=None,
                       help="validate and report every this fraction of an epoch, so short trials get several "
                       "chances to be pruned; the extra passes count in the search's cost, not the model's "
                       "(default: 0.25 with --epochs 1, else once per epoch)")
    aware.add_argument("--predict-defer-margin", nargs="?", const="auto", default=None, dest="defer_margin",
                       type=or_auto(number(positive=False, example="0.5")),
                       help="rank untried points by predicted energy and defer (never train) one predicted to cost "
                       "this share more than a finished trial at least as accurate as its best case; alone or "
                       "'auto': the prediction's own uncertainty (default: off)")
    run = p.add_argument_group("study, workers and tracking")
    run.add_argument("--study", default="green-mlops-sweep", help="study name; workers with the same name and "
                     "storage share it")
    run.add_argument("--storage", default=DEFAULT_STORAGE, help="sqlite:///FILE (default), journal:FILE, or "
                     "postgresql://user:pw@host/db for many machines")
    run.add_argument("--n-trials", type=positive_int, default=None, help="sample this many points instead of the whole grid "
                     "(default: every grid point once)")
    run.add_argument("--heartbeat", type=whole(1, "60"), default=60, help="seconds between a running trial's heartbeats")
    run.add_argument("--experiment", default="green-mlops-sweep", help="MLflow experiment")
    run.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's own default)")
    run.add_argument("--output", default="green_mlops_sweep", help="folder for ranking.csv and pareto.png")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_option(run, "the study and its ranking (every trial's row)")


def run(args: argparse.Namespace) -> int:
    """Validate everything, then run this worker's share of the study and print the ranking."""
    from green_mlops.training import zoo

    with json_stdout(args.json) as out:
        if args.list_archs:
            if args.json:
                print_json({"archs": zoo.available_models()}, out)
            else:
                print("\n".join(zoo.available_models()))
            return 0
        quiet_lightning()
        try:
            sweep = _build(args)
        except (SpaceError, StorageError, SweepError, ValueError, ConnectionError, DataUnavailable) as exc:
            print(f"green-mlops sweep: {exc}", file=sys.stderr)
            return 2
        report = sweep.run()
        print(sweep.summary(report))
        if args.json:
            print_json(report_json(args, report), out)
    states = report.table["state"]
    if len(states) and not (states == "COMPLETE").any() and report.complete:
        print(f"green-mlops sweep: every trial of study {args.study!r} failed (see the note column of "
              f"{report.csv_path}); no ranking to act on", file=sys.stderr)
        return 1
    return 0


def report_json(args: argparse.Namespace, report: SweepReport) -> dict[str, Any]:
    """What ``sweep --json`` prints: the study, where its files and runs are, and every trial's row of the ranking."""
    return {"study": args.study, "storage": redact_uri(args.storage), "experiment": args.experiment,
            "tracking_uri": redact_uri(args.tracking_uri) if args.tracking_uri else None,
            "parent_run_id": report.parent_run_id, "complete": report.complete,
            "trials_run_here": report.trials_run_here, "ranking_csv": str(report.csv_path),
            "pareto_plot": str(report.plot_path) if report.plot_path else None,
            "knee_rule": report.table.attrs.get("knee_rule"),
            "search_cost": dataclasses.asdict(report.cost) if report.cost is not None else None,
            "mlflow_ui": report.ui_hint, "trials": frame_records(report.table)}


def _build(args: argparse.Namespace) -> Sweep:
    from green_mlops.training import zoo

    space = build_space(args.archs, args.batch_sizes, args.lrs, args.lr_range, args.config,
                        check_arch=zoo.check_model_spec)
    _refuse_options_that_do_not_apply(args)
    base = TrainConfig(arch=space.archs[0], batch_size=space.batch_sizes[0], lr=space.lrs[0], epochs=args.epochs,
                       dataset=args.dataset, data_dir=args.data_dir, download=args.download,
                       max_steps=args.max_steps or None, momentum=args.momentum, seed=args.seed, accelerator=args.accelerator,
                       idle_seconds=args.idle_seconds,
                       data_options=({"train_samples": args.synthetic_samples,
                                      "inference_samples": args.synthetic_samples}
                                     if args.dataset == "synthetic" and args.synthetic_samples else {}))
    base.validate()
    objective = Objective(args.mode, args.inference_samples,
                          args.penalty_per_kwh if args.penalty_per_kwh is not None else 1.0)
    trial_options = {"dataset": args.dataset, "epochs": args.epochs, "max_steps": args.max_steps or None,
                     "momentum": args.momentum, "seed": args.seed, "idle_seconds": args.idle_seconds,
                     **{f"data.{k}": v for k, v in base.data_options.items()}}
    data = load_data(base.dataset, data_dir=base.data_dir, download=base.download, seed=base.seed,
                     **base.data_options)  # before any study, run or file exists: missing data is refused here
    settings = SweepSettings(study=args.study, storage=args.storage, experiment=args.experiment,
                             tracking_uri=args.tracking_uri, objective=objective, n_trials=args.n_trials,
                             energy_budget_J=args.energy_budget_J, profile_steps=args.profile_steps,
                             heartbeat_s=args.heartbeat, seed=args.seed, output_dir=Path(args.output),
                             progress=not args.no_progress, run_params=trial_options,
                             prune=args.prune, prune_margin=args.prune_margin,
                             prune_every=(args.prune_every if args.prune_every is not None else
                                          0.25 if args.epochs == 1 else 1.0),
                             defer_margin=args.defer_margin)
    return Sweep(space, settings, TrainingRunner(base, data))


def _refuse_options_that_do_not_apply(args: argparse.Namespace) -> None:
    """An option that would be silently ignored is an error: the user meant something by it."""
    if args.dataset != "synthetic" and args.synthetic_samples is not None:
        raise ValueError(f"--synthetic-samples applies only to --dataset synthetic (this sweep: {args.dataset})")
    if args.dataset != "cifar10" and (args.data_dir is not None or args.download):
        raise ValueError(f"--data-dir and --download apply only to --dataset cifar10 (this sweep: {args.dataset})")
    if args.mode == "penalty" and args.penalty_per_kwh is None:
        raise ValueError("--mode penalty needs --penalty-per-kwh λ (accuracy given up per kWh of lifecycle energy); "
                         "no default fits every scale: at 1 kJ per trial (0.00028 kWh), λ = 100 costs 0.028 accuracy")
    if args.mode != "penalty" and args.penalty_per_kwh is not None:
        raise ValueError(f"--penalty-per-kwh applies only to --mode penalty (this sweep's mode: {args.mode}); "
                         "drop it or add --mode penalty")


class TrainingRunner:
    """Trains one point of the space with the paper's defaults and measures its inference energy.

    The dataset is loaded once per worker (``data``, when the caller loaded it already) and reused by every trial.
    """

    def __init__(self, base: TrainConfig, data: DataBundle | None = None) -> None:
        self.base = base
        self._data = data

    def _load(self) -> DataBundle:
        b = self.base
        if self._data is None:
            self._data = load_data(b.dataset, data_dir=b.data_dir, download=b.download, seed=b.seed,
                                   **b.data_options)
        return self._data

    def features(self, params: dict) -> dict:
        """Model characteristics of an untried point (for the predictor): built on the CPU, never trained."""
        import torch

        from green_mlops.metrics.model_stats import activation_elements, model_stats
        from green_mlops.training.train import build_model

        data = self._load()
        model, x = build_model(params["arch"], data.num_classes), torch.zeros(1, *data.input_shape)
        acts = activation_elements(model, x)
        return {**model_stats(model, x).as_params(), **({names.ACTIVATION_ELEMENTS: acts} if acts else {})}

    def __call__(self, ctx: TrialContext) -> TrialResult:
        b = self.base
        self._load()
        config = dataclasses.replace(b, arch=ctx.params["arch"], batch_size=int(ctx.params["batch_size"]),
                                     lr=float(ctx.params["lr"]))
        logger = MLFlowLogger(tracking_uri=ctx.tracking_uri, run_id=ctx.run_id)
        o = train_and_measure(config, logger=logger, extra_callbacks=ctx.callbacks, data=self._data)
        return TrialResult(accuracy=o.val_accuracy, training_J=o.train_energy_J,
                           inference_J_per_sample=o.inference_energy_per_sample_J,
                           inference_samples=o.inference_samples or len(self._data.inference),
                           duration_s=o.train_time_s, steps=o.steps, methods=o.methods,
                           notes=[] if o.status == "completed" else [f"training {o.status} at step {o.steps}"],
                           accuracy_samples=len(self._data.val))
