"""``green-mlops train``: train one model with the paper's set-up, metered, logged to MLflow."""
from __future__ import annotations

import argparse
import sys

from pytorch_lightning.loggers import MLFlowLogger

from green_mlops.argtypes import interval, nonneg_int, nonneg_seconds, number, parse, positive_int
from green_mlops.commands.common import quiet_lightning
from green_mlops.outputs import add_json_option, json_stdout, print_json
from green_mlops.redact import redact_uri
from green_mlops.training.data import DATASETS, load_data
from green_mlops.training.train import ACCELERATORS, TrainConfig, TrainOutcome, arch_name, train_and_measure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops train``; defaults are the paper's (Table 2) on the bundled digits data."""
    d = TrainConfig(arch="lenet")
    parser.add_argument("--arch", default="lenet",
                        help="zoo name (lenet, resnet18, ...), torchvision:<name> or pkg.module:factory (default lenet)")
    parser.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"default {d.batch_size}")
    parser.add_argument("--lr", type=number(positive=True, example="0.001"), default=d.lr, help=f"SGD learning rate (default {d.lr})")
    parser.add_argument("--weight-decay", type=number(positive=False, example="5e-4"), default=d.weight_decay, help=f"default {d.weight_decay}")
    parser.add_argument("--momentum", type=number(positive=False, example="0.9"), default=d.momentum, help=f"default {d.momentum}")
    parser.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default {d.epochs}")
    parser.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many optimiser steps")
    parser.add_argument("--seed", type=nonneg_int, default=d.seed, help=f"default {d.seed}")
    parser.add_argument("--dataset", default=d.dataset, help=f"{', '.join(DATASETS)} (default {d.dataset})")
    parser.add_argument("--data-dir", default=None, help="cifar10: folder holding (or to hold) cifar-10-batches-py")
    parser.add_argument("--download", action="store_true", help="cifar10: download into --data-dir if missing")
    parser.add_argument("--train-samples", type=positive_int, default=None, help="synthetic: training samples (default 50000)")
    parser.add_argument("--inference-samples", type=positive_int, default=None,
                        help="synthetic: inference samples (default 50000)")
    parser.add_argument("--accelerator", default=d.accelerator, help=f"{', '.join(ACCELERATORS)} (default auto)")
    parser.add_argument("--num-workers", type=nonneg_int, default=d.num_workers, help="DataLoader workers (default 0)")
    parser.add_argument("--idle-seconds", type=nonneg_seconds, default=d.idle_seconds,
                        help="measure idle power this long first; net energy subtracts it (default 0)")
    parser.add_argument("--interval", type=interval, default=d.interval, help="sampling interval, s (default 0.1)")
    parser.add_argument("--experiment", default="green-mlops-train", help="MLflow experiment (default green-mlops-train)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or MLflow's default)")
    parser.add_argument("--run-name", default=None, help="MLflow run name")
    parser.add_argument("--no-mlflow", action="store_true",
                        help="do not log to MLflow (the energy trace and summary go to OUTPUT/green_mlops_energy)")
    parser.add_argument("--output", default=None, metavar="DIR", help="Lightning's root folder (default: here)")
    add_json_option(parser, "the outcome (accuracy, energies with their provenance, the MLflow run)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the command line describes (not yet validated)."""
    options = {k: v for k, v in (("train_samples", args.train_samples),
                                 ("inference_samples", args.inference_samples)) if v is not None}
    if options and args.dataset != "synthetic":
        raise ValueError("--train-samples and --inference-samples apply to --dataset synthetic only")
    return TrainConfig(arch=args.arch, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       momentum=args.momentum, epochs=args.epochs, dataset=args.dataset, data_dir=args.data_dir,
                       download=args.download, seed=args.seed, max_steps=args.max_steps,
                       num_workers=args.num_workers, accelerator=args.accelerator, interval=args.interval,
                       idle_seconds=args.idle_seconds, data_options=options, output_dir=args.output)


def _mlflow_logger(args: argparse.Namespace, uri: str) -> MLFlowLogger:
    """An MLflow logger whose run exists already, so an unreachable store fails before training."""
    logger = MLFlowLogger(experiment_name=args.experiment, tracking_uri=uri, run_name=args.run_name)
    try:
        _ = logger.run_id
    except Exception as exc:  # any connection or store problem is reported the same way
        raise ValueError(f"cannot use MLflow tracking at {uri}: {exc}; check --tracking-uri, or pass --no-mlflow") from exc
    return logger


def format_outcome(o: TrainOutcome, tracking_uri: str | None = None) -> str:
    """A short two-column table of one outcome, for the terminal."""
    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    rows = [("model / data", f"{o.arch} on {o.dataset} ({o.data_provenance}), {o.status}"),
            ("validation accuracy", fmt(o.val_accuracy, ".4f")),
            ("training energy", f"{o.train_energy_J:.1f} J = {o.train_energy_Wh:.5f} Wh"
             + (f" (net of idle {o.train_net_energy_J:.1f} J)" if o.train_net_energy_J is not None else "")),
            ("training", f"{fmt(o.train_time_s, '.1f')} s, {o.steps} steps, {o.samples_seen} samples"),
            ("inference energy", f"{fmt(o.inference_energy_per_sample_J, '.3g')} J/sample over "
             f"{o.inference_samples} samples ({fmt(o.inference_energy_J, '.1f')} J, {fmt(o.inference_time_s, '.1f')} s)"),
            ("provenance", "; ".join(f"{d}: {m}" for d, m in o.methods.items()) or "nothing metered")]
    if o.run_id:
        rows.append(("MLflow run", f"{o.run_id}" + (f" (mlflow ui --backend-store-uri {redact_uri(tracking_uri)})"
                                                    if tracking_uri else "")))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    """``green-mlops train``: check the input, train and measure, print the result table; 2 on bad input."""
    import mlflow

    try:
        config = config_from_args(args).validate()
        data = load_data(config.dataset, data_dir=config.data_dir, download=config.download, seed=config.seed,
                         **config.data_options)
        uri = None if args.no_mlflow else args.tracking_uri or mlflow.get_tracking_uri()
        logger = None if uri is None else _mlflow_logger(args, uri)
    except (ValueError, FileNotFoundError) as exc:
        print(f"green-mlops train: error: {exc}", file=sys.stderr)
        return 2
    quiet_lightning()
    print(f"green-mlops train: {arch_name(config.arch)} on {data.description}", file=sys.stderr)
    with json_stdout(args.json) as out:
        outcome = train_and_measure(config, logger=logger, data=data)
        print(format_outcome(outcome, uri))
        if args.json:
            print_json({**outcome.as_dict(), "tracking_uri": redact_uri(uri) if uri else None}, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``green-mlops train`` on its own (``python -m green_mlops.commands.train``)."""
    parser = argparse.ArgumentParser(prog="green-mlops train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parse(parser, argv)
    return args if isinstance(args, int) else run(args)


if __name__ == "__main__":
    sys.exit(main())
