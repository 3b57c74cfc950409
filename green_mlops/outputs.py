"""Where a command's results go: every output path checked before any expensive work, and ``--json`` on stdout.

A command that measures for an hour and then cannot save its result has lost the hour. So each
command probes its output paths first: the folder is created (or must exist as a folder) and a
probe file is created and removed in it; the error is one line naming the path and the reason.
With ``--json`` a command prints its result as strict JSON on stdout and everything else on stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import numbers
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO


class OutputError(ValueError):
    """An output path cannot be written; the message names it, why, and what to do."""


def writable_file(path: str | Path, what: str = "output", create: bool = True) -> Path:
    """``path`` as a Path, after checking that a file can be written there (its folder created if ``create``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputError(f"{what} {p} is a folder; give a file name")
    _probe(p.parent, what, p, create)
    return p


def writable_dir(path: str | Path, what: str = "output folder", create: bool = True) -> Path:
    """``path`` as a Path, after checking that files can be written in it (created if ``create``).

    Without ``create`` a missing folder is only checked to be creatable, and nothing is left behind.
    """
    p = Path(path).expanduser()
    _probe(p, what, p, create)
    return p


def _probe(folder: Path, what: str, shown: Path, create: bool) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{what} {shown}: {existing} is a file, not a folder; choose another path")
    if existing is not None and existing != folder and not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {shown}: cannot create folders in {existing}: permission denied; "
                              "choose another path")
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".green_mlops_probe_", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(shown) else ""
        raise OutputError(f"{what} {shown}: cannot write there: {reason}{where}; choose another path") from None


def add_json_option(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``, the same on every command that prints a result."""
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout (everything else goes to stderr), e.g. "
                             "`| python -m json.tool`")


@contextlib.contextmanager
def json_stdout(enabled: bool) -> Iterator[TextIO]:
    """The stream a command's result goes to; with ``enabled``, every other print meanwhile goes to stderr.

    So ``green-mlops sweep ... --json | python -m json.tool`` sees the JSON alone, whatever the
    training, MLflow or a plugin prints on the way.
    """
    out = sys.stdout
    if not enabled:
        yield out
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield out


def jsonable(value: Any) -> Any:
    """``value`` made of JSON types only: NaN and infinities as null, paths and other objects as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):  # a numpy or torch scalar
        return jsonable(value.item())
    return str(value)


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A pandas DataFrame as a list of row dicts in JSON types (missing values as null)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def json_text(payload: Any) -> str:
    """``payload`` as strict, indented JSON (NaN as null): what ``--json`` prints and JSON files hold."""
    return json.dumps(jsonable(payload), indent=2, allow_nan=False)


def print_json(payload: Any, stream: TextIO | None = None) -> None:
    """Print ``payload`` as :func:`json_text` on ``stream`` (default stdout)."""
    print(json_text(payload), file=stream or sys.stdout, flush=True)
