"""The files a metered run leaves behind: the power trace, the step plot, a JSON summary."""
from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from green_mlops import names
from green_mlops.meter import EnergyMeter
from green_mlops.run.plots import plot_step_energy
from green_mlops.run.stream import StepMetrics


def write_run_artifacts(meter: EnergyMeter, steps: Sequence[StepMetrics], summary: dict[str, Any], name: str,
                        xlabel: str = "step") -> list[Path]:
    """Write ``{name}_trace.parquet``, ``{name}_energy.png`` (when there are steps) and ``{name}_summary.json``."""
    out = Path(tempfile.mkdtemp(prefix="green_mlops_"))
    files = [meter.export_trace(out / names.trace_file(name))]
    if steps:
        files.append(plot_step_energy(steps, out / names.plot_file(name), xlabel=xlabel,
                                      title=f"{name}: power and cumulative energy by {xlabel}"))
    path = out / names.summary_file(name)
    path.write_text(json.dumps(summary, indent=2, default=str))
    files.append(path)
    return files
