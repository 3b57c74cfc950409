"""``green-mlops sync``: deliver metrics spooled while an MLflow server was unreachable."""
from __future__ import annotations

import argparse
import sys


def add_arguments(y: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops sync``."""
    y.add_argument("--spool-dir", default=None, help="spool folder (default $GREEN_MLOPS_SPOOL_DIR or "
                   "~/.cache/green_mlops/spool)")
    y.add_argument("--tracking-uri", default=None, help="deliver to this server instead of the one recorded")


def run(args: argparse.Namespace) -> int:
    """Deliver metrics that waited in the local spool while a tracking server was unreachable."""
    from green_mlops.mlflow import default_spool_dir, sync
    from green_mlops.mlflow.uploads import sync_artifacts

    directory = args.spool_dir or default_spool_dir()
    report = sync(directory, args.tracking_uri)
    files = sync_artifacts(directory, args.tracking_uri)
    print(f"green-mlops sync: delivered {report.delivered} metrics and {files.uploaded} artifact files from "
          f"{directory}; {report.remaining} metrics and {files.remaining} files remain")
    for run_id, error in {**report.errors, **files.errors}.items():
        print(f"  run {run_id}: {error}", file=sys.stderr)
    return 0 if report.remaining == 0 and files.remaining == 0 else 1
