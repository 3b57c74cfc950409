"""Figures users would rather look at than read: power per device and cumulative energy by step."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from green_mlops import names
from green_mlops.run.stream import StepMetrics


def plot_step_energy(steps: Sequence[StepMetrics], path: str | Path, title: str = "Energy by step",
                     xlabel: str = "step") -> Path:
    """Two panels over steps: power of each device (W), and cumulative energy per domain (J)."""
    from matplotlib.figure import Figure  # the object API: the user's pyplot backend is left alone

    path = Path(path)
    fig = Figure(figsize=(9, 6.5), constrained_layout=True)
    ax_p, ax_e = fig.subplots(2, 1, sharex=True)
    xs = [s for s, _, _ in steps]
    keys = sorted({k for _, _, m in steps for k in m})
    for key in [k for k in keys if k.startswith(names.POWER_PREFIX)]:
        label = names.label(key)
        ax_p.plot(xs, [m.get(key, float("nan")) for _, _, m in steps], label=label,
                  linewidth=2.0 if label == "total" else 1.2)
    for key in [k for k in keys if k.startswith(names.ENERGY_PREFIX)]:
        label = names.label(key)
        ax_e.plot(xs, [m.get(key, float("nan")) for _, _, m in steps], label=label,
                  linestyle="--" if label == "net" else "-", linewidth=2.0 if label == "total" else 1.2)
    ax_p.set_ylabel("power (W)")
    ax_e.set_ylabel("cumulative energy (J)")
    ax_e.set_xlabel(xlabel)
    for ax in (ax_p, ax_e):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
    ax_p.set_title(title)
    fig.savefig(path, dpi=110)
    return path
