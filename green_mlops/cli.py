"""The ``green-mlops`` command line: it only dispatches; each subcommand is one module of :mod:`green_mlops.commands`.

Only the chosen command's module is imported, so ``green-mlops hardware`` stays fast. Bad input is
refused before anything runs, with a message that names the fix.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from green_mlops import __version__
from green_mlops.argtypes import DefaultsHelpFormatter, parse
from green_mlops.extras import MissingExtra, require

COMMANDS = {
    "hardware": "what this machine can measure, and how",
    "measure": "meter any command: green-mlops measure [opts] -- CMD ARGS...",
    "sync": "deliver metrics spooled while an MLflow server was unreachable",
    "demo": "a small energy-aware search on bundled digits data (no download)",
    "train": "train one model with the EnergyCallback, logged to MLflow",
    "sweep": "energy-aware Optuna search over architectures and batch sizes",
    "report": "the paper's analysis of an MLflow experiment, as HTML or Markdown",
    "genai": "LLM inference energy per request and per token across request rates",
}
_EXTRA = {"report": "analysis", "genai": "genai"}  # commands that need an extra: named before their options load


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``selected`` is the command about to run, whose module alone is imported."""
    p = argparse.ArgumentParser(prog="green-mlops", description="Energy of ML training and inference: "
                                "measured where hardware allows, estimated (and said so) where not.",
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name, text in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text, formatter_class=DefaultsHelpFormatter)
        if name == selected:
            if name in _EXTRA:
                require(_EXTRA[name])
            mod = importlib.import_module(f"green_mlops.commands.{name}")
            mod.add_arguments(sp)
            sp.set_defaults(func=mod.run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from green_mlops.meter import SettingsError

    try:
        parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
        args = parse(parser, argv)
        return args if isinstance(args, int) else int(args.func(args))
    except (SettingsError, MissingExtra) as exc:
        print(f"green-mlops: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`| head -1`): end quietly, as the Python docs advise for SIGPIPE, by
        # pointing stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1

if __name__ == "__main__":
    sys.exit(main())
