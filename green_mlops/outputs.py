"""Check, before any expensive work, that every path a command will write can be written.

A command that measures for an hour and then cannot save its result has lost the hour. So each
command probes its output paths first: the folder is created (or must exist as a folder) and a
probe file is created and removed in it; the error is one line naming the path and the reason.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(ValueError):
    """An output path cannot be written; the message names it, why, and what to do."""


def writable_file(path: str | Path, what: str = "output") -> Path:
    """``path`` as a Path, after checking that a file can be written there (its folder is created)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise OutputError(f"{what} {p} is a folder; give a file name")
    _probe(p.parent, what, p)
    return p


def writable_dir(path: str | Path, what: str = "output folder") -> Path:
    """``path`` as a Path, after creating it (if needed) and checking that files can be written in it."""
    p = Path(path).expanduser()
    _probe(p, what, p)
    return p


def _probe(folder: Path, what: str, shown: Path) -> None:
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"{what} {shown}: {existing} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".green_mlops_probe_", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(shown) else ""
        raise OutputError(f"{what} {shown}: cannot write there: {reason}{where}; choose another path") from None
