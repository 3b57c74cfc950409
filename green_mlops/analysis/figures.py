"""The paper's figures from the run table (Figs. 2, 3, 5, 6, 7, and energy against time).

Each function returns a matplotlib ``Figure`` (no pyplot state, so it works headless and in threads;
a notebook shows it inline) with its caption: exactly which runs, batch sizes, energy (net or gross) and
window it shows. It raises :class:`MissingData` saying what the runs lack.
"""
from __future__ import annotations

import io
import textwrap

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from green_mlops.analysis.basis import Basis
from green_mlops.analysis.correlation import one_batch_size
from green_mlops.analysis.errors import MissingData
from green_mlops.analysis.schema import DOMAINS
from green_mlops.metrics.numbers import column, numbers, with_columns

__all__ = ["batch_size_effect", "one_size", "energy_vs_macs_param", "energy_vs_time", "epoch_curves", "png",
           "power_per_device", "time_per_model"]

PHASE_LABEL = {"train": "training", "inference": "inference"}
DEVICE_COLOUR = {"gpu": "#2a9d8f", "cpu": "#e76f51", "dram": "#8d99ae"}


def _figure(width: float, height: float, rows: int = 1, cols: int = 1) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False))


def _legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend for the whole figure, below the panels, with each label once."""
    seen: dict[str, object] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    if seen:
        widest = max(len(k) for k in seen)
        fig.legend(list(seen.values()), list(seen), loc="outside lower center", fontsize=8, frameon=False,
                   ncols=1 if widest > 60 else (2 if widest > 35 else min(4, len(seen))))


def png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for embedding in HTML or saving)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _hardware_groups(df: pd.DataFrame, limit: int = 4) -> list[tuple[str, pd.DataFrame]]:
    return list(df.groupby("hardware", sort=True))[:limit]


def _scope(runs: pd.DataFrame, averaged: bool = False, per_run: bool = False) -> str:
    """Which models and batch sizes a figure shows, and how repeats (and, if ``averaged``, sizes) combine;
    ``per_run``: the figure draws every run, so repeats are not averaged but shown."""
    models = sorted(runs["model"].astype(str).unique()) if "model" in runs else []
    sizes = sorted(column(runs, "batch_size").dropna().unique())
    names = ", ".join(models) if len(models) <= 6 else f"{len(models)} models"
    at = (f"at batch size {sizes[0]:g}" if len(sizes) == 1 else
          f"at batch sizes {', '.join(f'{b:g}' for b in sizes)}" + (" (averaged per model)" if averaged else "")
          if sizes else "")
    repeats = ("" if "repeat" not in runs or column(runs, "repeat").nunique() < 2 else
               "; each repeat its own point" if per_run else "; repeats averaged")
    return f"{names} {at} ({len(runs)} runs{repeats})".replace("  ", " ")


def one_size(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the batch size Table 3 compares models at (see correlation.one_batch_size)."""
    keep, _ = one_batch_size(runs)
    return runs[keep]


def time_per_model(runs: pd.DataFrame) -> tuple[Figure, str]:
    """Fig. 2: seconds per 1000 samples of training and of inference, per model (one panel per hardware)."""
    runs = one_size(runs)
    df = with_columns(runs, train=column(runs, "train_time_s") / column(runs, "train_samples") * 1000,
                      inference=column(runs, "inference_time_s") / column(runs, "inference_samples") * 1000)
    df = df.dropna(subset=["train", "inference"], how="all")
    if df.empty:
        raise MissingData("Fig. 2 needs time/fit_s or time/test_s with sample counts (EnergyCallback on fit and test)")
    groups = _hardware_groups(df)
    fig, axes = _figure(7, 1.4 + 0.35 * df["model"].nunique() * len(groups), len(groups), 1)
    for ax, (hw, g) in zip(axes.flat, groups):
        means = g.groupby("model")[["train", "inference"]].mean().sort_values("train", na_position="first")
        y = np.arange(len(means))
        ax.barh(y - 0.2, means["train"], 0.4, label="training (the whole fit, validation loops included)",
                color="#264653")
        ax.barh(y + 0.2, means["inference"], 0.4, label="inference (test/predict stage)", color="#e9c46a")
        ax.set_yticks(y, means.index)
        ax.set_xlabel("seconds per 1000 samples")
        ax.set_title(hw, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Training and inference time per model (paper Fig. 2)")
    return fig, (f"Seconds per 1000 samples, {_scope(df, averaged=True)}. Training time is the whole fit (validation loops "
                 "included); inference time is the test or predict stage.")


def _window_note(g: pd.DataFrame, phase: str) -> str:
    w = g.get(f"{phase}_device_window", pd.Series(dtype=object)).dropna()
    if w.eq("training steps").any():
        return (f"{PHASE_LABEL[phase]}: these runs hold per-device energy to the last training step only, so each "
                "device's share over the steps is applied to the whole fit's energy, over the fit's time")
    return f"{PHASE_LABEL[phase]}: each device's energy over the whole stage / the stage's time"


def power_per_device(runs: pd.DataFrame) -> tuple[Figure, str]:
    """Fig. 3: mean gross power of each device (GPU, CPU, DRAM) per model, in training and in inference, each
    device's energy divided by the time of the same window; idle power marked where it was measured."""
    runs = one_size(runs)
    phases = [p for p in ("train", "inference") if any(column(runs, f"{p}_power_{d}_W").notna().any() for d in DOMAINS)]
    if not phases:
        raise MissingData("Fig. 3 needs per-device energy (the callback's fit/test summaries, or energy/<device>_J)")
    groups = _hardware_groups(runs)
    fig, axes = _figure(5.5 * len(phases), 1.6 + 0.35 * runs["model"].nunique() * len(groups), len(groups),
                        len(phases))
    notes = []
    for r, (hw, g) in enumerate(groups):
        idle = column(g, "idle_total_W").mean()
        for c, phase in enumerate(phases):
            ax: Axes = axes[r, c]
            cols = {d: f"{phase}_power_{d}_W" for d in DOMAINS if column(g, f"{phase}_power_{d}_W").notna().any()}
            means = pd.DataFrame({d: column(g, col) for d, col in cols.items()}).groupby(g["model"]).mean()
            left = np.zeros(len(means))
            for d in cols:
                vals = means[d].fillna(0).to_numpy()
                ax.barh(means.index, vals, left=left, color=DEVICE_COLOUR[d], label=d)
                left += vals
            if np.isfinite(idle):
                ax.axvline(idle, color="black", linestyle="--", linewidth=1, label="idle power, all devices")
            ax.set_xlabel("mean gross power (W)")
            ax.set_title(textwrap.fill(f"{PHASE_LABEL[phase]} · {hw}", 60), fontsize=9)
            ax.grid(axis="x", alpha=0.3)
            notes.append(_window_note(g, phase))
        prov = str(g["provenance"].iloc[0]) if "provenance" in g else "unknown"
        notes.append(f"{hw}: {prov}")
    _legend(fig, axes)
    fig.suptitle("Average power per device (paper Fig. 3)")
    return fig, (f"Mean gross power per device (idle included; the dashed line is the idle power where measured), "
                 f"{_scope(runs, averaged=True)}. " + "; ".join(dict.fromkeys(notes)) + ".")


def energy_vs_macs_param(runs: pd.DataFrame, train_metrics: pd.DataFrame, inference_metrics: pd.DataFrame,
                         basis: Basis) -> tuple[Figure, str]:
    """Fig. 6: energy of training and of inference against MACs per parameter, one point per run."""
    panels = []
    for phase, table in (("train", train_metrics), ("inference", inference_metrics)):
        x, y = column(table, "macs_param"), column(runs, basis.energy(phase))
        ok = x.notna() & y.notna()
        if ok.any():
            panels.append((phase, x[ok], y[ok]))
    if not panels:
        raise MissingData("Fig. 6 needs macs and trainable_params (logged by EnergyCallback) with an energy")
    fig, axes = _figure(5.2 * len(panels), 4.2, 1, len(panels))
    colours = {hw: f"C{i}" for i, hw in enumerate(sorted(runs["hardware"].unique()))}
    for ax, (phase, x, y) in zip(axes.flat, panels):
        for hw, idx in runs.loc[x.index].groupby("hardware").groups.items():
            ax.scatter(x[idx], y[idx], color=colours[hw], label=hw, s=28)
        pooled = " (all runs)" if runs.loc[x.index, "hardware"].nunique() > 1 else ""
        for i in x.index:
            ax.annotate(str(runs.at[i, "model"]), (x[i], y[i]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if x.max() > 10 * x.min() > 0:
            ax.set_xscale("log")
        if y.max() > 10 * y.min() > 0:
            ax.set_yscale("log")
        if len(x) >= 3 and x.nunique() > 1 and y.nunique() > 1:
            ax.set_title(f"{PHASE_LABEL[phase]}: Spearman ρ = {stats.spearmanr(x, y).statistic:.2f}{pooled}",
                         fontsize=9)
        else:
            ax.set_title(PHASE_LABEL[phase], fontsize=9)
        ax.set_xlabel("MACs per trainable parameter (macs_param)")
        ax.set_ylabel(f"{PHASE_LABEL[phase]} energy, {basis.short} (J)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Energy against MACs per parameter (paper Fig. 6)")
    shown = runs.loc[sorted(set().union(*(x.index for _, x, _ in panels)))]
    return fig, (f"Energy, {basis.label}, of each phase's whole window against MACs per trainable parameter, one "
                 f"point per run: {_scope(shown, per_run=True)}. ρ in the titles is a point value; intervals are in the "
                 "correlation tables.")


def batch_size_effect(runs: pd.DataFrame, basis: Basis) -> tuple[Figure, str]:
    """Fig. 7: energy per training sample and mean utilisation against batch size, one line per model tried at
    two or more sizes. Runs without a utilisation trace show mean training power instead (the paper's Fig. 7a)."""
    b, e = column(runs, "batch_size"), column(runs, basis.per_sample("train"))
    ok = b.notna() & e.notna()
    sizes = b[ok].groupby([runs.loc[ok, "hardware"], runs.loc[ok, "model"]]).transform("nunique")
    ok &= sizes.reindex(runs.index).fillna(0) >= 2
    if ok.sum() == 0:
        raise MissingData("Fig. 7 needs runs of one model at two or more batch sizes (a batch_size param), e.g. "
                          "`green-mlops sweep` over batch sizes")
    device = runs["train_util_device"] if "train_util_device" in runs else pd.Series(None, index=runs.index)
    util = column(runs, "train_util")[ok] * 100
    has_util = util.notna().any()
    right = util if has_util else (column(runs, "train_energy_J") / column(runs, "train_time_s"))[ok]  # gross power
    df = with_columns(runs[ok], _b=b[ok], _e=e[ok], _u=right, _d=device[ok])
    fig, axes = _figure(10, 4.6, 1, 2)
    several = runs["hardware"].nunique() > 1
    if df.groupby(["hardware", "model"]).ngroups > 10:  # the default cycle has ten colours: no two lines share one
        axes[0, 0].set_prop_cycle(color=colormaps["tab20"].colors)
    for (hw, model), g in df.groupby(["hardware", "model"], sort=True):
        m = g.groupby("_b")[["_e", "_u"]].mean().sort_index()
        label = f"{model} · {hw}" if several else str(model)
        line = axes[0, 0].plot(m.index, m["_e"], marker="o", label=label)[0]
        axes[0, 0].scatter(g["_b"], g["_e"], s=8, alpha=0.4, color=line.get_color())
        if m["_u"].notna().any():
            dev = g["_d"].dropna()
            style = "--" if has_util and len(dev) and dev.iloc[0] == "cpu" else "-"
            axes[0, 1].plot(m.index, m["_u"], marker="o", linestyle=style, color=line.get_color())
    axes[0, 0].set_ylabel(f"{basis.short} energy per training sample (J)")
    if has_util:
        axes[0, 1].set_ylabel("mean utilisation (%)")
        axes[0, 1].set_title("GPU solid, CPU dashed (runs without a GPU)", fontsize=8)
    else:
        axes[0, 1].set_ylabel("mean gross training power (W)")
        axes[0, 1].set_title("no utilisation trace in these runs: mean power (training energy / time)", fontsize=8)
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Effect of batch size on energy and utilisation (paper Fig. 7)")
    window = ("the whole fit's net energy over its training samples" if basis.net else
              "the callback's energy_per_sample_train_J: gross energy of the training loop over its samples")
    right_text = ("mean GPU utilisation (CPU where no GPU)" if has_util else
                  "mean gross training power (fit energy / fit time)")
    return fig, (f"Left: energy per training sample ({window}), mean over repeats with each run as a dot. Right: "
                 f"{right_text}. {_scope(runs[ok])}.")


def epoch_curves(epochs: pd.DataFrame) -> tuple[Figure, str]:
    """Fig. 5: loss, accuracy and cumulative energy per epoch, mean across runs (one line per hardware
    configuration) with the min–max range shaded."""
    if epochs.empty:
        raise MissingData("Fig. 5 needs per-epoch energy (energy/train_epoch_J from EnergyCallback)")
    fig, axes = _figure(12, 4, 1, 3)
    for ax, (col, label) in zip(axes.flat, (("loss", "loss"), ("accuracy", "accuracy"),
                                            ("cumulative_energy_J", "cumulative energy (J)"))):
        for hw, g in epochs.groupby("hardware", sort=True):
            s = numbers(g[col]).groupby(g["epoch"]).agg(["mean", "min", "max"])
            if s["mean"].notna().any():
                line = ax.plot(s.index, s["mean"], marker="o", label=f"{hw} ({g['run_id'].nunique()} runs)")[0]
                ax.fill_between(s.index, s["min"], s["max"], alpha=0.2, color=line.get_color())
        if not ax.lines:
            ax.text(0.5, 0.5, f"no {col} logged per epoch", ha="center", transform=ax.transAxes)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Loss, accuracy and energy per epoch: mean over runs, range shaded (paper Fig. 5)")
    return fig, (f"Per epoch, mean over {epochs['run_id'].nunique()} runs per hardware with the min–max range "
                 "shaded; energy is gross (energy/train_epoch_J + energy/val_epoch_J, idle included).")


def energy_vs_time(runs: pd.DataFrame, basis: Basis) -> tuple[Figure, str]:
    """Energy against duration for training and inference, with the least-squares line and Pearson r."""
    panels = []
    for phase in ("train", "inference"):
        t, e = column(runs, f"{phase}_time_s"), column(runs, basis.energy(phase))
        ok = t.notna() & e.notna()
        if ok.any():
            panels.append((phase, t[ok], e[ok]))
    if not panels:
        raise MissingData("energy against time needs time/fit_s or time/test_s with their energies")
    fig, axes = _figure(5.2 * len(panels), 4, 1, len(panels))
    colours = {hw: f"C{i}" for i, hw in enumerate(sorted(runs["hardware"].unique()))}
    for ax, (phase, t, e) in zip(axes.flat, panels):
        for hw, idx in runs.loc[t.index].groupby("hardware").groups.items():
            ax.scatter(t[idx], e[idx], s=24, color=colours[hw], label=hw)
            if len(idx) >= 3 and t[idx].nunique() > 1 and e[idx].nunique() > 1:
                fit = stats.linregress(t[idx], e[idx])
                xs = np.linspace(t[idx].min(), t[idx].max(), 50)
                ax.plot(xs, fit.intercept + fit.slope * xs, color=colours[hw], linewidth=1,
                        label=f"{PHASE_LABEL[phase]} fit on {hw}: r = {fit.rvalue:.3f}, slope {fit.slope:.4g} W")
            gpu = column(runs, basis.device(phase, "gpu"))[idx]
            window = runs.loc[idx].get(f"{phase}_device_window", pd.Series(dtype=object))
            if gpu.notna().all() and window.eq("stage").all() and len(idx):
                ax.scatter(t[idx], gpu, s=18, marker="x", color=colours[hw], label=f"GPU alone on {hw}")
        ax.set_title(PHASE_LABEL[phase], fontsize=9)
        ax.set_xlabel("duration (s)")
        ax.set_ylabel(f"{basis.short} energy (J)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    fig.suptitle("Energy against time (paper §6.1.2: r = 0.99)")
    shown = runs.loc[sorted(set().union(*(t.index for _, t, _ in panels)))]
    return fig, (f"Energy, {basis.label}, against the duration of the same window (the whole fit; the test or "
                 f"predict stage), one point per run (×: the GPU's energy alone, where it covers the same window): "
                 f"{_scope(shown, per_run=True)}. Where CPU or DRAM energy is a constant-power estimate its part of the total is "
                 "linear in time by construction (see the findings).")
