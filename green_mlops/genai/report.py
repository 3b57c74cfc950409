"""A sweep's tables and figures: energy per request and per output token against rate (the paper's
Figs. 8 and 9), per-device energy per request (Fig. 10), latency against rate, and a console table.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from green_mlops import names
from green_mlops.genai.aggregate import SweepAnalysis
from green_mlops.genai.saturation import Saturation

LEVELS_FILE = "levels.csv"
DEVICES_FILE = "devices.csv"


def write_tables(analysis: SweepAnalysis, directory: str | Path) -> list[Path]:
    """``levels.csv`` (one row per rate level) and, when metered, ``devices.csv`` (per level and device)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / LEVELS_FILE]
    analysis.levels.to_csv(files[0], index=False)
    if not analysis.devices.empty:
        files.append(out / DEVICES_FILE)
        analysis.devices.to_csv(files[1], index=False)
    return files


class _Figures:
    """``subplots``/``close`` as pyplot has them, from matplotlib's object API: the user's backend stays as it is."""

    @staticmethod
    def subplots(*args: Any, figsize: Any = None, constrained_layout: bool = False, **kwargs: Any) -> Any:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, constrained_layout=constrained_layout)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def close(fig: Any) -> None:
        """Nothing to release: the figure belongs to no pyplot state."""


def _pyplot() -> type[_Figures]:
    return _Figures


def plot_sweep(analysis: SweepAnalysis, directory: str | Path, title: str = "") -> list[Path]:
    """Write the sweep's figures as PNG files into ``directory``; energy figures only when it was metered."""
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    levels = analysis.levels.sort_values(names.RATE)
    files = []
    basis = str(levels["energy_basis"].iloc[0]) if len(levels) else ""
    if len(levels) and levels["energy_J"].notna().any():
        for column, name, ylabel in ((names.ENERGY_PER_REQUEST, "energy_per_request.png", "energy per request (J)"),
                                     (names.ENERGY_PER_OUTPUT_TOKEN, "energy_per_token.png",
                                      "energy per output token (J)")):
            fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
            ax.plot(levels[names.RATE], levels[column], marker="o")
            _mark(ax, levels, analysis.saturation)
            _axes(ax, ylabel + f", {basis}", f"{title}: {ylabel} vs request rate (steady window)")
            files.append(_save(fig, out / name, plt))
        files.append(plot_devices(analysis.devices, out / "device_energy_per_request.png", title))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for column, label in (("latency_p50_s", "latency p50"), ("latency_p90_s", "latency p90"),
                          ("latency_p99_s", "latency p99"), ("ttft_p50_s", "time to first token p50")):
        ax.plot(levels[names.RATE], levels[column], marker="o", label=label)
    _mark(ax, levels, analysis.saturation)
    _axes(ax, "seconds", f"{title}: latency vs request rate")
    ax.legend(fontsize=8)
    files.append(_save(fig, out / "latency.png", plt))
    return files


def plot_devices(devices: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Stacked bars: energy per request of each device (GPU, CPU, DRAM) at every rate level."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    table = devices.pivot_table(index=names.RATE, columns="device", values=names.ENERGY_PER_REQUEST, aggfunc="sum")
    bottom = pd.Series(0.0, index=table.index)
    labels = [f"{r:g}" for r in table.index]
    for device in table.columns:
        values = table[device].fillna(0.0)
        kind = devices.loc[devices["device"] == device, "provenance"].iloc[0]
        ax.bar(labels, values, bottom=bottom, label=f"{device} ({kind})")
        bottom = bottom + values
    ax.set_xlabel("request rate (rps)")
    ax.set_ylabel("energy per request (J)")
    ax.set_title(f"{title}: energy per request by device", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, Path(path), plt)


def plot_compare(levels_by_model: Mapping[str, pd.DataFrame], directory: str | Path,
                 devices_by_model: Mapping[str, pd.DataFrame] | None = None, at_rps: float | None = None) -> list[Path]:
    """Several models on one set of axes: energy per request and per token vs rate, devices at ``at_rps``."""
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for column, name, ylabel in ((names.ENERGY_PER_REQUEST, "compare_energy_per_request.png", "energy per request (J)"),
                                 (names.ENERGY_PER_OUTPUT_TOKEN, "compare_energy_per_token.png",
                                  "energy per output token (J)")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
        for model, levels in levels_by_model.items():
            t = levels.sort_values(names.RATE)
            ax.plot(t[names.RATE], t[column], marker="o", label=model)
        _axes(ax, ylabel, f"{ylabel} vs request rate")
        ax.legend(fontsize=8)
        files.append(_save(fig, out / name, plt))
    if devices_by_model and at_rps is not None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
        models = list(devices_by_model)
        domains = ["gpu", "cpu", "dram"]
        width = 0.8 / len(domains)
        for j, domain in enumerate(domains):
            values = []
            for model in models:
                d = devices_by_model[model]
                d = d[(d["domain"] == domain) & ((d[names.RATE] - at_rps).abs() < 1e-9)]
                values.append(float(d[names.ENERGY_PER_REQUEST].sum()) if len(d) else math.nan)
            ax.bar([i + j * width for i in range(len(models))], values, width=width, label=domain)
        ax.set_xticks([i + width for i in range(len(models))], models)
        ax.set_ylabel("energy per request (J)")
        ax.set_title(f"energy per request by device at {at_rps:g} rps", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
        files.append(_save(fig, out / "compare_devices.png", plt))
    return files


def console_table(levels: pd.DataFrame) -> str:
    """A plain-text summary, one line per level: the steady window's figures, then the drain's."""
    head = ["rps", "sent", "ok", "failed", "served/s", "p50 lat s", "p50 ttft s", "out tok", "window s", "energy J",
            "J/req", "J/token", "W", "drain s", "drain J", "cache hit", "sustained"]
    rows = []
    for _, r in levels.sort_values(names.RATE).iterrows():
        rows.append([f"{r[names.RATE]:g}", str(r["requests"]), str(r["ok"]), str(r["failed"]),
                     _num(r["served_rps"], ".2f"), _num(r["latency_p50_s"], ".3f"), _num(r["ttft_p50_s"], ".3f"),
                     _num(r["output_tokens"], ".0f"), _num(r["duration_s"], ".1f"), _num(r["energy_J"], ".1f"),
                     _num(r[names.ENERGY_PER_REQUEST], ".3g"), _num(r[names.ENERGY_PER_OUTPUT_TOKEN], ".3g"),
                     _num(r[names.ENERGY_PER_SECOND], ".1f"), _num(r["drain_s"], ".1f"),
                     _num(r["drain_energy_J"], ".1f"), _num(r["cache_hit_rate"], ".2f"),
                     "yes" if r["sustainable"] else "NO"])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in [head, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _num(value: object, spec: str) -> str:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if math.isnan(v) else format(v, spec)


def _mark(ax, levels: pd.DataFrame, saturation: Saturation) -> None:
    if saturation.rate_rps is not None:
        ax.axvline(saturation.rate_rps, color="grey", linestyle="--", linewidth=1,
                   label=f"saturation {saturation.rate_rps:g} rps")
    bad = levels[~levels["sustainable"].astype(bool)]
    for i, rate in enumerate(bad[names.RATE]):
        ax.axvspan(rate * 0.97, rate * 1.03, color="red", alpha=0.15, label="rate not sustained" if i == 0 else None)


def _axes(ax, ylabel: str, title: str) -> None:
    ax.set_xlabel("request rate (requests per second)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
