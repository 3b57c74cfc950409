"""``green-mlops report``: the paper's analysis of an experiment's runs as an HTML or Markdown report."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from green_mlops.analysis.errors import AnalysisError
from green_mlops.analysis.report import FORMATS, write_report
from green_mlops.outputs import add_json_option

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` subcommand's options."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--experiment", help="MLflow experiment whose runs to analyse (e.g. the sweep's)")
    src.add_argument("--runs", metavar="CSV_OR_DIR",
                     help="analyse a runs.csv written by an earlier report (e.g. committed results/) instead")
    parser.add_argument("--output", default="green_mlops_report", metavar="DIR",
                        help="folder for the report, runs.csv, epochs.csv, correlations.csv and the energy "
                             "predictor (default: green_mlops_report)")
    parser.add_argument("--format", choices=FORMATS, default="html",
                        help="html: one self-contained page; md: Markdown with PNG figures, for a pull request")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or MLflow's default)")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the experiment")
    parser.add_argument("--no-traces", action="store_true",
                        help="skip reading power traces (faster; no utilisation in Fig. 7)")
    add_json_option(parser, "where the report went and the paper's findings with their verdicts")


def run(args: argparse.Namespace) -> int:
    """Write the report; 0 on success, 2 with a message saying what to do when the input cannot be analysed."""
    from green_mlops.outputs import OutputError, json_stdout, print_json, writable_dir

    with json_stdout(args.json) as out:
        try:
            writable_dir(args.output, "--output", create=False)  # before reading any run; creates nothing
            report = write_report(args.experiment, args.output, args.format, args.tracking_uri, runs_csv=args.runs,
                                  log=not args.no_log, traces=not args.no_traces)
        except (AnalysisError, OutputError) as exc:
            print(f"green-mlops report: {exc}", file=sys.stderr)
            return 2
        a = report.analysis
        print(f"report: {report.path} ({len(a.runs)} runs, {a.runs['hardware'].nunique()} hardware configuration(s))")
        print(f"energy: {a.basis.label}")
        for f in a.findings:
            print(f"  {f.claim}: {f.here} [{f.verdict}]")
        if report.run_id:
            print(f"logged to MLflow run {report.run_id} (artifacts under report/)")
        if args.json:
            print_json({"report": str(report.path), "format": args.format, "files": [str(p) for p in report.files],
                        "runs": len(a.runs), "hardware_configurations": int(a.runs["hardware"].nunique()),
                        "energy_basis": a.basis.label, "findings": [dataclasses.asdict(f) for f in a.findings],
                        "notes": a.notes, "mlflow_run_id": report.run_id}, out)
    return 0
