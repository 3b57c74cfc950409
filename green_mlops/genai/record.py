"""What a sweep leaves on disk before any energy is attached: its settings, time windows and requests.

Saved as ``sweep.json`` and ``requests.csv`` (wall-clock epoch seconds), so energy can be joined
later from a trace recorded on the server host (``green-mlops genai --from DIR --server-trace FILE``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

SWEEP_FILE = "sweep.json"
REQUESTS_FILE = "requests.csv"


class RecordError(ValueError):
    """A folder that holds no saved sweep; the message names what is missing."""


@dataclass
class LevelInfo:
    """One rate level's phases (wall clock) and cache hit rate: warm-up from ``start`` to ``steady_start``,
    the steady window to ``load_end`` (when sending stops), the drain to ``end`` (the last answer).

    ``cpu`` holds CPU seconds over the steady window (this process's and the machine's busy time);
    a sweep saved before warm-ups existed loads with ``steady_start`` = ``start``.
    """

    index: int
    rate_rps: float
    start: float
    load_end: float
    end: float
    cache_hit_rate: float | None = None
    cache_hit_rate_method: str = "not exposed by the server"
    steady_start: float | None = None
    warmup_how: str = "none"
    steady_how: str = ""
    cpu: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.steady_start is None:
            self.steady_start = self.start

    @property
    def window(self) -> tuple[float, float]:
        """The steady window (start, end), wall clock."""
        assert self.steady_start is not None
        return self.steady_start, self.load_end

    @property
    def duration_s(self) -> float:
        """The steady window's length: the time energy per request and per second are measured over."""
        return self.load_end - self.window[0]


@dataclass
class SweepRecord:
    """Settings, the idle window, the levels and one row per request of a finished (or interrupted) sweep."""

    params: dict[str, str]
    idle: tuple[float, float] | None
    levels: list[LevelInfo]
    requests: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    idle_cpu: dict[str, float] | None = None

    def save(self, directory: str | Path) -> list[Path]:
        """Write ``sweep.json`` and ``requests.csv`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"params": self.params, "idle": list(self.idle) if self.idle else None,
                "levels": [asdict(level) for level in self.levels], "notes": self.notes,
                "idle_cpu": self.idle_cpu}
        (out / SWEEP_FILE).write_text(json.dumps(meta, indent=2))
        self.requests.to_csv(out / REQUESTS_FILE, index=False)
        return [out / SWEEP_FILE, out / REQUESTS_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> SweepRecord:
        """Read a sweep written by :meth:`save`; a RecordError names the missing file."""
        d = Path(directory)
        missing = [n for n in (SWEEP_FILE, REQUESTS_FILE) if not (d / n).is_file()]
        if missing:
            raise RecordError(f"{str(d)!r} is not a sweep's output folder (missing {', '.join(missing)}); give the "
                             "folder a `green-mlops genai ... --output DIR` run wrote")
        meta: dict[str, Any] = json.loads((d / SWEEP_FILE).read_text())
        requests = pd.read_csv(d / REQUESTS_FILE, keep_default_na=False, na_values=[""])
        levels = [LevelInfo(**level) for level in meta["levels"]]
        return cls(meta["params"], tuple(meta["idle"]) if meta.get("idle") else None, levels, requests,
                   list(meta.get("notes", [])), meta.get("idle_cpu"))
