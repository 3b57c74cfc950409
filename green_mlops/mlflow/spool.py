"""Metrics that could not reach the tracking server wait here, on disk, in order, one file per run.

Each line of ``<run_id>.jsonl`` is one metric with its run and tracking URI, so ``green-mlops sync``
can deliver it later from any process.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

Record = tuple[str, float, int, int]  # key, value, timestamp in ms, step


def default_spool_dir() -> Path:
    """``$GREEN_MLOPS_SPOOL_DIR``, else ``~/.cache/green_mlops/spool``."""
    env = os.environ.get("GREEN_MLOPS_SPOOL_DIR", "").strip()
    return Path(env) if env else Path.home() / ".cache" / "green_mlops" / "spool"


class Spool:
    """The append-only spool file of one run."""

    def __init__(self, directory: str | Path, run_id: str, tracking_uri: str) -> None:
        self.path = Path(directory) / f"{run_id}.jsonl"
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()

    def append(self, records: list[Record]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self.path.open("a") as fh:
            for key, value, ts, step in records:
                fh.write(json.dumps({"run_id": self.run_id, "tracking_uri": self.tracking_uri, "key": key,
                                     "value": value, "timestamp": ts, "step": step}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def __len__(self) -> int:
        if not self.path.exists():
            return 0
        with self._lock, self.path.open() as fh:
            return sum(1 for _ in fh)

    def read(self) -> list[Record]:
        return [r for _, r in read_file(self.path)]

    def keep_only(self, remaining: list[Record]) -> None:
        """Rewrite the spool with what is still undelivered (or remove it when nothing is)."""
        with self._lock:
            if not remaining:
                self.path.unlink(missing_ok=True)
                return
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w") as fh:
                for key, value, ts, step in remaining:
                    fh.write(json.dumps({"run_id": self.run_id, "tracking_uri": self.tracking_uri, "key": key,
                                         "value": value, "timestamp": ts, "step": step}) + "\n")
            tmp.replace(self.path)


def read_file(path: Path) -> list[tuple[str, Record]]:
    """(tracking URI, record) for every complete line of a spool file; a torn last line is skipped."""
    out = []
    with path.open() as fh:
        for line in fh:
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue
            out.append((d["tracking_uri"], (d["key"], float(d["value"]), int(d["timestamp"]), int(d["step"]))))
    return out


@dataclass
class SyncReport:
    """What ``sync`` delivered, what is left, and why."""

    delivered: int = 0
    remaining: int = 0
    errors: dict[str, str] = field(default_factory=dict)
