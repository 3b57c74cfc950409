"""``green-mlops sync``: deliver metrics spooled while an MLflow server was unreachable."""
from __future__ import annotations

import argparse
import sys

from green_mlops.outputs import add_json_option, json_stdout, print_json


def add_arguments(y: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops sync``."""
    y.add_argument("--spool-dir", default=None, help="spool folder (default $GREEN_MLOPS_SPOOL_DIR or "
                   "~/.cache/green_mlops/spool)")
    y.add_argument("--tracking-uri", default=None, help="deliver to this server instead of the one recorded")
    add_json_option(y, "what was delivered and what remains")


def run(args: argparse.Namespace) -> int:
    """Deliver metrics that waited in the local spool while a tracking server was unreachable."""
    from green_mlops.mlflow import default_spool_dir, sync
    from green_mlops.mlflow.uploads import sync_artifacts

    directory = args.spool_dir or default_spool_dir()
    with json_stdout(args.json) as out:
        report = sync(directory, args.tracking_uri)
        files = sync_artifacts(directory, args.tracking_uri)
    errors = {**report.errors, **files.errors}
    done = report.remaining == 0 and files.remaining == 0
    if args.json:
        print_json({"spool_dir": str(directory), "delivered_metrics": report.delivered,
                    "remaining_metrics": report.remaining, "rejected_metrics": report.rejected,
                    "uploaded_files": files.uploaded, "remaining_files": files.remaining, "errors": errors,
                    "complete": done}, out)
    else:
        print(f"green-mlops sync: delivered {report.delivered} metrics and {files.uploaded} artifact files from "
              f"{directory}; {report.remaining} metrics and {files.remaining} files remain")
    for run_id, error in errors.items():
        print(f"  run {run_id}: {error}", file=sys.stderr)
    return 0 if done else 1
