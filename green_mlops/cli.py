"""The ``green-mlops`` command line: ``hardware``, ``measure``, ``sync``, ``demo``, ``train``, ``sweep``,
``report`` and ``genai``.

The last four live in their own modules and are imported only when chosen, so ``hardware`` stays fast.

Bad input is refused before anything runs, with a message that names the fix.
"""
from __future__ import annotations

import argparse
import importlib
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from green_mlops.argtypes import DefaultsHelpFormatter, interval, nonneg_seconds, positive_int
from green_mlops.meter import EnergyMeter, Settings, SettingsError, discover
from green_mlops.meter.host import memory_total_bytes
from green_mlops.meter.machine import machine_facts


def _wrap_table(rows: list[list[str]], head: list[str], last_width: int = 70) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    indent = sum(widths) + 2 * len(widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(head[:-1], widths)) + "  " + head[-1]]
    out.append("-" * (indent + min(last_width, max(len(r[-1]) for r in [head, *rows]))))
    for r in rows:
        lines = textwrap.wrap(r[-1], last_width) or [""]
        out.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + lines[0])
        out.extend(" " * indent + line for line in lines[1:])
    return "\n".join(out)


def cmd_hardware(args: argparse.Namespace) -> int:
    """Say, per component, whether it is measured or estimated here, how, and why."""
    found = discover(Settings.from_env())
    facts = machine_facts()
    if args.json:
        print(json.dumps({"machine": facts, "findings": [f.as_dict() for f in found.findings],
                          "sources": [s.info.as_dict() for s in found.sources]}, indent=2))
        return 0
    vm = "yes" if facts["virtual_machine"] == "true" else "no"
    gpus = facts.get("gpu_names", "none")
    ram_gib = memory_total_bytes() / 2**30  # GiB, as the DRAM model counts it: one unit in this output
    print(f"machine: {facts['cpu_model']}, {facts['cpu_count']} usable CPUs, {ram_gib:.1f} GiB RAM, "
          f"virtual machine: {vm}, GPUs: {facts['gpu_count']} ({gpus})"
          + (f", driver {facts['gpu_driver']}" if "gpu_driver" in facts else ""))
    print()
    rows = [[f.component, f.status, f.method, f.reason] for f in found.findings]
    print(_wrap_table(rows, ["component", "status", "method", "how / why"]))
    estimated = sorted({s.info.domain for s in found.sources if s.info.provenance == "estimated"})
    if estimated:
        print(f"\n{', '.join(estimated).upper()} energy here is estimated by a model, not measured; "
              "results say so in their provenance.")
    return 0


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def cmd_measure(args: argparse.Namespace) -> int:
    """Meter any command; print its energy (and save it with --output); exit with the command's exit code."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("green-mlops measure: missing command; usage: green-mlops measure [--idle S] [--interval S] "
              "[--output FILE] -- CMD ARGS...", file=sys.stderr)
        return 2
    meter = EnergyMeter(interval=args.interval, name="command")
    if args.idle:
        print(f"green-mlops: measuring idle power for {args.idle:g} s ...", file=sys.stderr)
        meter.measure_idle(args.idle)
    received: list[int] = []
    meter.start()
    try:
        child = subprocess.Popen(command)
    except OSError as exc:
        meter.stop()
        print(f"green-mlops measure: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def forward(signum: int, _frame: Any) -> None:
        # Ctrl-C already reached the command (same foreground process group): only note it, so the
        # command gets one SIGINT, not two. SIGTERM and SIGHUP were sent to us alone: pass them on.
        received.append(signum)
        if signum != signal.SIGINT:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    result = meter.stop()
    exit_code = code if code >= 0 else 128 - code
    payload = {
        "command": command,
        "exit_code": exit_code,
        "signals_received": [signal.Signals(s).name for s in received],
        "interval_s": meter.interval,
        "idle": meter.idle.as_dict() if meter.idle else None,
        "result": result.as_dict(),
        "findings": [f.as_dict() for f in meter.findings],
    }
    written = []
    if args.output:
        _write_json(Path(args.output), payload)
        written.append(args.output)
    if args.trace:
        meter.export_trace(args.trace)
        written.append(args.trace)
    print("\n" + result.table(), file=sys.stderr)
    print(f"green-mlops: wrote {' and '.join(written)}" if written else
          "green-mlops: nothing written (--output FILE for the JSON summary, --trace FILE for the power trace)",
          file=sys.stderr)
    return exit_code


_METER_ONLY = {"epochs": 5, "idle": 2.0, "interval": 0.1}  # ``demo --meter-only`` options and their defaults


def cmd_demo(args: argparse.Namespace) -> int:
    """The demo search on digits (no download); ``--meter-only``: one metered run, epoch by epoch."""
    if not args.meter_only:
        given = [f"--{k}" for k in _METER_ONLY if getattr(args, k) is not None]
        if given:
            print(f"green-mlops demo: {', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with "
                  "--meter-only (the demo search has fixed settings); add --meter-only or drop "
                  f"{'it' if len(given) == 1 else 'them'}", file=sys.stderr)
            return 2
        from green_mlops.sweep_cli import demo

        return demo(args.output)
    from green_mlops.demo import run_demo

    opts = {k: v if (v := getattr(args, k)) is not None else default for k, default in _METER_ONLY.items()}
    run_demo(epochs=opts["epochs"], idle_s=opts["idle"], interval=opts["interval"], output=args.output)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    """Deliver metrics that waited in the local spool while a tracking server was unreachable."""
    from green_mlops.mlflow import default_spool_dir, sync

    directory = args.spool_dir or default_spool_dir()
    report = sync(directory, args.tracking_uri)
    print(f"green-mlops sync: delivered {report.delivered} metrics from {directory}; {report.remaining} remain")
    for run_id, error in report.errors.items():
        print(f"  run {run_id}: {error}", file=sys.stderr)
    return 0 if report.remaining == 0 else 1


_LAZY = {
    "train": ("green_mlops.training", "train one model with the EnergyCallback, logged to MLflow"),
    "sweep": ("green_mlops.sweep_cli", "energy-aware Optuna search over architectures and batch sizes"),
    "report": ("green_mlops.analysis.cli", "the paper's analysis of an MLflow experiment, as HTML or Markdown"),
    "genai": ("green_mlops.genai.cli", "LLM inference energy per request and per token across request rates"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``selected`` is the command about to run, whose module alone is imported."""
    p = argparse.ArgumentParser(prog="green-mlops", description="Energy of ML training and inference: "
                                "measured where hardware allows, estimated (and said so) where not.",
                                formatter_class=DefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    h = sub.add_parser("hardware", formatter_class=DefaultsHelpFormatter, help="what this machine can measure, and how")
    h.add_argument("--json", action="store_true", help="print machine-readable JSON")
    h.set_defaults(func=cmd_hardware)
    m = sub.add_parser("measure", formatter_class=DefaultsHelpFormatter, help="meter any command: green-mlops measure [opts] -- CMD ARGS...")
    m.add_argument("--idle", type=nonneg_seconds, default=0.0, metavar="S",
                   help="measure idle power for S seconds first; net energy subtracts it (default 0)")
    m.add_argument("--interval", type=interval, default=0.1, metavar="S", help="sampling interval (default 0.1 s)")
    m.add_argument("--output", default=None, metavar="FILE",
                   help="also write the JSON summary (command, exit code, idle, result, findings) to FILE "
                   "(default: none written; the summary is printed)")
    m.add_argument("--trace", default=None, metavar="FILE", help="also write the power trace (.parquet or .csv)")
    m.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    m.set_defaults(func=cmd_measure)
    y = sub.add_parser("sync", formatter_class=DefaultsHelpFormatter, help="deliver metrics spooled while an MLflow server was unreachable")
    y.add_argument("--spool-dir", default=None, help="spool folder (default $GREEN_MLOPS_SPOOL_DIR or "
                   "~/.cache/green_mlops/spool)")
    y.add_argument("--tracking-uri", default=None, help="deliver to this server instead of the one recorded")
    y.set_defaults(func=cmd_sync)
    d = sub.add_parser("demo", formatter_class=DefaultsHelpFormatter, help="a small energy-aware search on bundled digits data (no download)")
    d.add_argument("--meter-only", action="store_true", help="instead: meter one small MLP run, epoch by epoch")
    d.add_argument("--epochs", type=positive_int, default=None, help=f"--meter-only: epochs (default {_METER_ONLY['epochs']})")
    d.add_argument("--idle", type=nonneg_seconds, default=None, metavar="S",
                   help=f"--meter-only: idle baseline seconds (default {_METER_ONLY['idle']:g})")
    d.add_argument("--interval", type=interval, default=None, metavar="S",
                   help=f"--meter-only: sampling interval (default {_METER_ONLY['interval']:g} s)")
    d.add_argument("--output", default="green_mlops_demo", metavar="DIR", help="where results go (default green_mlops_demo)")
    d.set_defaults(func=cmd_demo)
    for name, (module, text) in _LAZY.items():
        sp = sub.add_parser(name, help=text, description=text, formatter_class=DefaultsHelpFormatter)
        if name == selected:
            mod = importlib.import_module(module)
            mod.add_arguments(sp)
            sp.set_defaults(func=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"green-mlops: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
