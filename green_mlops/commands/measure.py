"""``green-mlops measure [--idle S] [--interval S] -- CMD…``: meter any command, exit with its code.

The command runs in its own process group; SIGINT, SIGTERM and SIGHUP reach it exactly once. Every path this
command writes is checked before the command runs; a failed write at the end keeps the command's exit code.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from green_mlops.argtypes import interval, nonneg_seconds, port
from green_mlops.commands.child import SignalGate, spawn, wait_forwarding
from green_mlops.meter import EnergyMeter
from green_mlops.outputs import OutputError, add_json_option, json_text, print_json, writable_file


def add_arguments(m: argparse.ArgumentParser) -> None:
    """Options of ``green-mlops measure``."""
    m.add_argument("--idle", type=nonneg_seconds, default=0.0, metavar="S",
                   help="measure idle power for S seconds first; net energy subtracts it (default 0)")
    m.add_argument("--interval", type=interval, default=0.1, metavar="S", help="sampling interval (default 0.1 s)")
    m.add_argument("--output", default=None, metavar="FILE",
                   help="also write the JSON summary (command, exit code, idle, result, findings) to FILE, "
                   "or - for stdout (default: none written; the summary is printed)")
    m.add_argument("--trace", default=None, metavar="FILE", help="also write the power trace (.parquet or .csv)")
    m.add_argument("--prometheus-port", type=port, default=None, metavar="N",
                   help="serve energy counters and power gauges for Prometheus on port N while the command runs")
    m.add_argument("--prometheus-addr", default="127.0.0.1", metavar="ADDR",
                   help="address for --prometheus-port (default 127.0.0.1, this machine only)")
    add_json_option(m, "the summary (the command's own output goes to stderr)")
    m.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(payload))


def run(args: argparse.Namespace) -> int:
    """Meter any command; print its energy (and save it with --output); exit with the command's exit code."""
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("green-mlops measure: missing command; usage: green-mlops measure [--idle S] [--interval S] "
              "[--output FILE] -- CMD ARGS...", file=sys.stderr)
        return 2
    if args.json and args.output == "-":
        print("green-mlops measure: --json prints the summary on stdout already; drop --output -",
              file=sys.stderr)
        return 2
    try:  # every path this command writes, checked before the command runs ("-" is stdout)
        for path, flag in ((args.output, "--output"), (args.trace, "--trace")):
            if path and path != "-":
                writable_file(path, flag)
    except OutputError as exc:
        print(f"green-mlops measure: {exc}", file=sys.stderr)
        return 2
    with SignalGate() as gate:  # before the meter's and exporter's threads start, so they inherit the blocked signals
        try:
            exporters = []
            if args.prometheus_port is not None:
                from green_mlops.prometheus import PrometheusExporter

                exporters.append(PrometheusExporter(args.prometheus_port, args.prometheus_addr))
            meter = EnergyMeter(interval=args.interval, name="command", exporters=exporters)
        except ValueError as exc:
            print(f"green-mlops measure: {exc}", file=sys.stderr)
            return 2
        for exporter in exporters:
            print(f"green-mlops: serving Prometheus metrics on {exporter.url}", file=sys.stderr)
        exit_code, interrupted = _run_metered(meter, command, args.idle, gate, args.json)
    if exit_code is None:
        return 127 if interrupted == "not found" else 126  # the command could not start: said so already
    result = meter.stop()
    payload = {
        "command": command,
        "exit_code": exit_code,
        "signals_received": [signal.Signals(s).name for s in gate.received],
        "interval_s": meter.interval,
        "idle": meter.idle.as_dict() if meter.idle else None,
        "result": result.as_dict(),
        "findings": [f.as_dict() for f in meter.findings],
    }
    if interrupted:
        payload["interrupted"] = interrupted
    written = []
    try:
        if args.output == "-" or args.json:
            print_json(payload)
        elif args.output:
            _write_json(Path(args.output), payload)
            written.append(args.output)
        if args.trace:
            meter.export_trace(args.trace)
            written.append(args.trace)
    except (OSError, ImportError, ValueError) as exc:  # the disk filled meanwhile, say: the command's code stands
        print(f"green-mlops measure: could not write the result: {getattr(exc, 'strerror', None) or exc}",
              file=sys.stderr)
        return exit_code
    print("\n" + result.table(), file=sys.stderr)
    if written or not (args.output == "-" or args.json):
        print(f"green-mlops: wrote {' and '.join(written)}" if written else
              "green-mlops: nothing written (--output FILE for the JSON summary, --trace FILE for the power trace)",
              file=sys.stderr)
    return exit_code


def _run_metered(meter: EnergyMeter, command: list[str], idle_s: float, gate: SignalGate,
                 stdout_to_stderr: bool = False) -> tuple[int | None, str | None]:
    """Idle baseline (a signal ends it and skips the command), then the command; (exit code, why interrupted).

    The exit code is None when the command could not start ("not found" or "not runnable").
    """
    if idle_s:
        print(f"green-mlops: measuring idle power for {idle_s:g} s ...", file=sys.stderr)
        done, stop = threading.Event(), threading.Event()

        def idle() -> None:
            try:
                meter.measure_idle(idle_s, stop=stop)
            finally:
                done.set()

        threading.Thread(target=idle, name="green-mlops-idle", daemon=True).start()
        signo = gate.wait_for(done)
        if signo is not None:
            stop.set()
            done.wait()
            meter.start()
            return 128 + signo, f"{signal.Signals(signo).name} during the idle measurement; the command did not run"
    meter.start()
    try:
        pid = spawn(command, stdout_to_stderr)
    except OSError as exc:
        print(f"green-mlops measure: cannot run {command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        meter.stop()
        return None, "not found" if isinstance(exc, FileNotFoundError) else "not runnable"
    return wait_forwarding(gate, pid), None
