"""``green-mlops measure [--idle S] [--interval S] -- CMD…``: meter any command, exit with its code."""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from green_mlops.argtypes import interval, nonneg_seconds
from green_mlops.meter import EnergyMeter


def add_arguments(m: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops measure``."""
    m.add_argument("--idle", type=nonneg_seconds, default=0.0, metavar="S",
                   help="measure idle power for S seconds first; net energy subtracts it (default 0)")
    m.add_argument("--interval", type=interval, default=0.1, metavar="S", help="sampling interval (default 0.1 s)")
    m.add_argument("--output", default=None, metavar="FILE",
                   help="also write the JSON summary (command, exit code, idle, result, findings) to FILE "
                   "(default: none written; the summary is printed)")
    m.add_argument("--trace", default=None, metavar="FILE", help="also write the power trace (.parquet or .csv)")
    m.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def run(args: argparse.Namespace) -> int:
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
