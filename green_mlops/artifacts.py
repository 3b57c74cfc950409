"""The files a metered run leaves behind (the power trace, the step plot, a JSON summary) and the line saying
what it cost and where they went."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from green_mlops.meter import EnergyMeter, EnergyResult
from green_mlops.plots import plot_step_energy
from green_mlops.stream import StepMetrics


def write_run_artifacts(meter: EnergyMeter, steps: Sequence[StepMetrics], summary: dict[str, Any], name: str,
                        xlabel: str = "step") -> list[Path]:
    """Write ``{name}_trace.parquet``, ``{name}_energy.png`` (when there are steps) and ``{name}_summary.json``."""
    out = Path(tempfile.mkdtemp(prefix="green_mlops_"))
    files = [meter.export_trace(out / f"{name}_trace.parquet")]
    if steps:
        files.append(plot_step_energy(steps, out / f"{name}_energy.png", xlabel=xlabel,
                                      title=f"{name}: power and cumulative energy by {xlabel}"))
    path = out / f"{name}_summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    files.append(path)
    return files


def summary_line(stage: str, status: str, total_J: float, local: EnergyResult | None, where: list[str]) -> str:
    """One line for the end of a metered run: energy gross (and net of idle), provenance, where the data went.

    ``local`` is this process's result (None under DDP, where ``total_J`` sums ranks and the net is per rank).
    """
    text = f"green_mlops: {stage} {status}: {total_J:.1f} J = {total_J / 3600:.4g} Wh"
    if local is not None and local.net_J is not None:
        text += f" gross, {local.net_J:.1f} J = {local.net_J / 3600:.4g} Wh net of idle"
    elif local is None:
        text += " (all ranks)"
    if local is not None:
        text += "; " + ", ".join(f"{s.info.name} {s.info.provenance} ({s.info.method})" for s in local.sources)
    return text + "; " + ("; ".join(where) if where else "no files written")
