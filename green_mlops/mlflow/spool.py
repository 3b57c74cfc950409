"""Metrics that could not reach the tracking server wait here, on disk, in order, one file per run.

``<spool_dir>/<run_id>.jsonl`` is append-only JSON Lines, one metric a line, each line complete in
itself so that ``green-mlops sync`` (or :func:`green_mlops.mlflow.sync`) can deliver it later from
any process::

    {"run_id": "…", "tracking_uri": "http://…", "key": "energy/total_J", "value": 12.5,
     "timestamp": 1700000000000, "step": 42}

The spool is private: the folder is created 0700 and every file in it 0600. A line names the
tracking URI with its credentials redacted (:func:`green_mlops.redact.redact_uri`); where the URI
carries a password, ``sync`` needs it, so the full URI is kept once, in ``<run_id>.jsonl.uri``
(0600), and never printed. Nothing touches the folder until something must be spooled: a missing or
unusable spool costs nothing while the tracking store answers.

``timestamp`` is in milliseconds since the epoch, as MLflow stores it; values are always finite
(the writer never spools NaN or infinity). Once every line of a file is delivered the file is
removed. Metrics MLflow itself declares invalid (a bad key, say) cannot ever be delivered; they
are set aside in ``<run_id>.jsonl.rejected`` rather than blocking the run's spool forever.

Several processes may touch one run's spool (a training writer and a ``sync`` run by hand, two
writers for one run): every read, append, rewrite and removal holds an exclusive ``flock`` on
``<run_id>.jsonl.lock`` (a plain in-process lock where ``fcntl`` does not exist); the lock file
exists only while a spool does or someone holds the lock.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from green_mlops.mlflow.wire import Record
from green_mlops.redact import redact_uri

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per spool is all we can promise
    fcntl = None  # type: ignore[assignment]

SUFFIX = ".jsonl"
DIR_MODE = 0o700
FILE_MODE = 0o600
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,255}$")  # MLflow's own rule for run ids


def check_run_id(run_id: object) -> str:
    """``run_id`` if it is a valid MLflow run id (so that it cannot name a file outside the spool)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run_id must be an MLflow run id (letters, digits, '_' and '-'); got {run_id!r}")
    return run_id


def default_spool_dir() -> Path:
    """``$GREEN_MLOPS_SPOOL_DIR``, else ``~/.cache/green_mlops/spool``."""
    env = os.environ.get("GREEN_MLOPS_SPOOL_DIR", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "green_mlops" / "spool"


@dataclass
class SyncReport:
    """What :func:`~green_mlops.mlflow.sync` delivered, what is still waiting, and why."""

    delivered: int = 0
    remaining: int = 0
    rejected: int = 0  # metrics MLflow refuses as invalid, set aside in ``<run_id>.jsonl.rejected``
    errors: dict[str, str] = field(default_factory=dict)  # run id -> last error of a run not fully delivered


def encode(run_id: str, tracking_uri: str, records: Iterable[Record]) -> bytes:
    uri = redact_uri(tracking_uri)
    return "".join(json.dumps({"run_id": run_id, "tracking_uri": uri, "key": k, "value": v,
                               "timestamp": ts, "step": s}) + "\n" for k, v, ts, s in records).encode()


def decode(line: bytes) -> tuple[str, Record] | None:
    """(tracking URI, record) of one line, or None for a line that is torn or not ours."""
    try:
        d = json.loads(line)
        return d["tracking_uri"], (str(d["key"]), float(d["value"]), int(d["timestamp"]), int(d["step"]))
    except (ValueError, KeyError, TypeError):
        return None


class SpoolFile:
    """The spool of one run: append, count, read back in batches, remove when delivered."""

    def __init__(self, directory: str | Path, run_id: str, tracking_uri: str = "") -> None:
        self.directory = Path(directory)
        self.run_id = check_run_id(run_id)
        self.tracking_uri = tracking_uri
        self.path = self.directory / f"{run_id}{SUFFIX}"
        self.uri_path = self.path.with_name(self.path.name + ".uri")
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        self._tlock = threading.RLock()
        self._depth = 0  # re-entry by the thread that holds the lock takes no second flock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to this run's spool, across threads and processes; re-entrant."""
        with self._tlock:
            if self._depth or fcntl is None:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            make_private_dir(self.directory)
            while True:  # the lock file is removed with the spool: make sure we locked the live one
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    st, cur = os.fstat(fd), os.stat(self.lock_path)
                    if (st.st_ino, st.st_dev) == (cur.st_ino, cur.st_dev):
                        break
                except FileNotFoundError:
                    pass
                os.close(fd)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                if not self.path.exists():  # no spool, no lock file left behind (waiters re-check the inode)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.lock_path)
                os.close(fd)  # releases the flock

    def exists(self) -> bool:
        return self.path.exists()

    def append(self, records: list[Record]) -> None:
        """Append records durably (fsync), in one write where the OS allows: a killed process tears at most one line."""
        if not records:
            return
        data = encode(self.run_id, self.tracking_uri, records)
        with self.locked():
            if redact_uri(self.tracking_uri) != self.tracking_uri and not self.uri_path.exists():
                _write_private(self.uri_path, self.tracking_uri.encode())  # sync needs the credentials
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, FILE_MODE)
            try:
                size = os.fstat(fd).st_size
                if size:
                    os.lseek(fd, size - 1, os.SEEK_SET)  # O_APPEND: the write still goes to the end
                    if os.read(fd, 1) != b"\n":
                        data = b"\n" + data  # a torn last line (killed writer) must not swallow ours
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)

    def count(self) -> int:
        """Lines waiting (a torn line counts too; it is skipped on delivery); touches nothing when there are none."""
        if not self.path.exists():
            return 0
        with self.locked():
            try:
                with self.path.open("rb") as fh:
                    return sum(1 for line in fh if line.strip())
            except FileNotFoundError:
                return 0

    def first_tracking_uri(self) -> str | None:
        """The URI to deliver to: the private copy with credentials if kept, else the first line's."""
        if not self.path.exists():
            return None
        with self.locked():
            try:
                return self.uri_path.read_text().strip() or None
            except FileNotFoundError:
                pass
            try:
                with self.path.open("rb") as fh:
                    for line in fh:
                        got = decode(line)
                        if got is not None:
                            return got[0]
            except FileNotFoundError:
                pass
        return None

    @staticmethod
    def read_batch(fh: IO[bytes], n: int) -> list[Record]:
        """Up to ``n`` records from an open spool, skipping torn lines (call while locked)."""
        out: list[Record] = []
        while len(out) < n:
            line = fh.readline()
            if not line:
                break
            if line.strip() and (got := decode(line)) is not None:
                out.append(got[1])
        return out

    def keep_from(self, fh: IO[bytes], offset: int, head: Sequence[Record] = ()) -> int:
        """Rewrite the spool as ``head`` then what follows ``offset`` in ``fh`` (call while locked); lines kept."""
        fh.seek(offset)
        tmp = self.path.with_name(self.path.name + ".tmp")
        kept = len(head)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "wb") as out:
            out.write(encode(self.run_id, self.tracking_uri, head))
            for line in fh:
                if line.strip():
                    out.write(line if line.endswith(b"\n") else line + b"\n")
                    kept += 1
            out.flush()
            os.fsync(out.fileno())
        if kept:
            tmp.replace(self.path)
        else:
            tmp.unlink()
            self.remove()
        return kept

    def remove(self) -> None:
        """Delete the spool (its lock file goes when the lock is released)."""
        with self.locked():
            self.path.unlink(missing_ok=True)
            self.uri_path.unlink(missing_ok=True)

    def reject(self, records: list[Record], reason: str) -> None:
        """Set aside metrics MLflow refuses as invalid, with the reason, so that nothing is silently lost."""
        with self.locked(), os.fdopen(os.open(self.rejected_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                              FILE_MODE), "ab") as fh:
            for k, v, ts, s in records:
                fh.write((json.dumps({"run_id": self.run_id, "tracking_uri": redact_uri(self.tracking_uri), "key": k,
                                      "value": v, "timestamp": ts, "step": s, "error": reason}) + "\n").encode())


def spooled_runs(directory: str | Path) -> list[str]:
    """Run ids with a spool file in ``directory``, sorted (files whose name is no run id are left alone)."""
    d = Path(directory)
    names = (p.name[: -len(SUFFIX)] for p in d.glob(f"*{SUFFIX}")) if d.is_dir() else ()
    return sorted(n for n in names if _RUN_ID.fullmatch(n))


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and its parents) with the folder itself 0700; an existing folder is left as it is."""
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
