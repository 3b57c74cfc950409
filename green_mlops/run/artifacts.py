"""The files a metered run leaves behind (the power trace, the step plot, a JSON summary) and the line saying
what it cost and where they went."""
from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from green_mlops import names
from green_mlops.meter import J_PER_WH, EnergyMeter, EnergyResult
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


def start_run_artifacts(meter: EnergyMeter, steps: Sequence[StepMetrics], summary: dict[str, Any], name: str,
                        xlabel: str = "step") -> Future[list[Path]]:
    """:func:`write_run_artifacts` on a thread of its own, so drawing overlaps the metric writers' last delivery.

    The thread is not a daemon: should its caller stop waiting, the interpreter still lets it finish at exit.
    """
    done: Future[list[Path]] = Future()

    def work() -> None:
        if done.set_running_or_notify_cancel():
            try:
                done.set_result(write_run_artifacts(meter, steps, summary, name, xlabel=xlabel))
            except BaseException as exc:  # handed to whoever waits on the result
                done.set_exception(exc)

    threading.Thread(target=work, name=f"green-mlops-artifacts-{name}").start()
    return done


def summary_line(stage: str, status: str, total_J: float, local: EnergyResult | None, where: list[str]) -> str:
    """One line for the end of a metered run: energy gross (and net of idle), provenance, where the data went.

    ``local`` is this process's result (None under DDP, where ``total_J`` sums ranks and the net is per rank).
    """
    text = f"green_mlops: {stage} {status}: {total_J:.1f} J = {total_J / J_PER_WH:.4g} Wh"
    if local is not None and local.net_J is not None:
        text += f" gross, {local.net_J:.1f} J = {local.net_J / J_PER_WH:.4g} Wh net of idle"
    elif local is None:
        text += " (all ranks)"
    if local is not None:
        text += "; " + ", ".join(f"{s.info.name} {s.info.provenance} ({s.info.method})" for s in local.sources)
    return text + "; " + ("; ".join(where) if where else "no files written")
