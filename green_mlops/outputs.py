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
