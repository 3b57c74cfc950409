"""The paper's headline findings, checked on these runs: each says what the paper found, what the runs
show, whether they agree, and why not when they do not (or what data is missing to tell)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from green_mlops import names
from green_mlops.analysis.correlation import MIN_RUNS, one_batch_size

__all__ = ["FindingCheck", "batch_size_optimum", "check_findings"]

PLATEAU = 0.10  # sizes past the minimum within 10 % of it: "no further improvement"


@dataclass(frozen=True)
class FindingCheck:
    """One of the paper's claims against these runs; ``agrees`` is None when the runs cannot tell."""

    claim: str
    paper: str
    here: str
    agrees: bool | None
    why: str = ""


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").replace([np.inf, -np.inf], np.nan)


def train_inference_ratio(runs: pd.DataFrame) -> FindingCheck:
    """Training takes ≈3× the time of inference over the same number of samples (paper §6.1.1)."""
    claim, paper = "training ≈ 3× inference time per sample", "≈3× for most models (r ≈ 0.9); DPN, RegNet deviate"
    need = ["train_time_s", "train_samples", "inference_time_s", "inference_samples"]
    if any(c not in runs for c in need):
        return FindingCheck(claim, paper, "n/a", None, "runs lack train or inference time and sample counts")
    ratio = (_num(runs["train_time_s"]) / _num(runs["train_samples"])) / (
        _num(runs["inference_time_s"]) / _num(runs["inference_samples"]))
    ratio = ratio.dropna()
    if ratio.empty:
        return FindingCheck(claim, paper, "n/a", None, "no run has both a training and a test/predict stage metered")
    med = float(ratio.median())
    here = f"median {med:.2f}× over {len(ratio)} run(s) (range {ratio.min():.2f}–{ratio.max():.2f})"
    agrees = 2.0 <= med <= 4.0
    why = "" if agrees else ("training time here is the whole fit, validation loops included; "
                             f"a ratio of {med:.1f} means the backward pass and optimiser cost "
                             f"{'more' if med > 4 else 'less'} relative to the forward pass on this hardware")
    return FindingCheck(claim, paper, here, agrees, why)


def macs_param_correlation(runs: pd.DataFrame, metric_table: pd.DataFrame, energy: str) -> FindingCheck:
    """``macs_param`` correlates with energy (Spearman ρ ≈ 0.9, Table 3), better than MACs (ρ ≈ 0.8)."""
    claim, paper = "macs_param correlates with energy", "Spearman ρ ≈ 0.85–0.92 per hardware (MACs alone ≈ 0.8)"
    empty = pd.Series(np.nan, index=runs.index)
    x, y = _num(metric_table.get("macs_param", empty)), _num(runs.get(energy, empty))
    macs = _num(runs.get("macs", empty))
    same_batch, _ = one_batch_size(runs)
    sizes = _num(runs["batch_size"]) if "batch_size" in runs else empty
    parts, rhos = [], []
    for hw, idx in runs.groupby("hardware", sort=True).groups.items():
        ok = x.loc[idx].notna() & y.loc[idx].notna() & same_batch.loc[idx]
        xs, ys = x.loc[idx][ok], y.loc[idx][ok]
        if len(xs) < MIN_RUNS or xs.nunique() < 2 or ys.nunique() < 2:
            continue
        rho = float(stats.spearmanr(xs, ys).statistic)
        ms = macs.loc[idx][ok]
        rho_m = float(stats.spearmanr(ms, ys).statistic) if ms.notna().all() and ms.nunique() > 1 else float("nan")
        rhos.append(rho)
        at = sizes.loc[idx][ok].dropna().unique()
        batch = f" at batch size {at[0]:g}" if len(at) == 1 and sizes.loc[idx].nunique() > 1 else ""
        parts.append(f"{hw}{batch}: ρ = {rho:.2f} (n = {len(xs)}" + (f"; MACs alone ρ = {rho_m:.2f})"
                                                                     if np.isfinite(rho_m) else ")"))
    if not rhos:
        return FindingCheck(claim, paper, "n/a", None, f"needs at least {MIN_RUNS} runs of different models on one hardware "
                       f"with macs, trainable_params and {energy}")
    agrees = min(rhos) >= 0.7
    why = "" if agrees else ("energy here varies more with batch size or run length than with the model's "
                             "arithmetic intensity, or too few architectures were run to rank them")
    return FindingCheck(claim, paper, f"{energy}: " + "; ".join(parts), agrees, why)


FALLING, MINIMUM, RISING = "still falling at the largest size", "minimum inside the range", "rises from the smallest size"


def batch_size_optimum(runs: pd.DataFrame, energy: str = names.ENERGY_PER_SAMPLE_TRAIN) -> pd.DataFrame:
    """Per hardware and model: the batch size with the least ``energy`` and the shape of the curve around it.

    Columns: ``hardware``, ``model``, ``sizes`` (tried), ``best_batch_size``, ``best_J``, ``trend`` (the
    minimum is inside the sizes tried, energy still falls at the largest, or rises from the smallest) and
    ``plateau`` (every size larger than the best is within 10 % of it; None when the best is the largest).
    """
    cols = ["hardware", "model", "sizes", "best_batch_size", "best_J", "trend", "plateau"]
    if "batch_size" not in runs or energy not in runs:
        return pd.DataFrame(columns=cols)
    df = runs.assign(_b=_num(runs["batch_size"]), _e=_num(runs[energy])).dropna(subset=["_b", "_e"])
    rows = []
    for (hw, model), g in df.groupby(["hardware", "model"], sort=True):
        by = g.groupby("_b")["_e"].median().sort_index()
        if len(by) < 2:
            continue
        best = float(by.idxmin())
        larger = by[by.index > best]
        trend = FALLING if larger.empty else (RISING if best == by.index[0] else MINIMUM)
        plateau = None if larger.empty else bool((larger <= by.min() * (1 + PLATEAU)).all())
        rows.append([hw, model, ", ".join(f"{b:g}" for b in by.index), best, float(by.min()), trend, plateau])
    return pd.DataFrame(rows, columns=cols)


def batch_size_finding(runs: pd.DataFrame, energy: str) -> FindingCheck:
    """Each machine has a batch size past which energy stops falling (paper §6.1.2, Fig. 7)."""
    claim, paper = "an energy-minimising batch size exists", "energy falls with batch size, then stops (every hardware)"
    opt = batch_size_optimum(runs, energy)
    if opt.empty:
        return FindingCheck(claim, paper, "n/a", None, "needs runs of one model at two or more batch sizes (batch_size param)")
    here = "; ".join(f"{r.model} on {r.hardware}: best {r.best_batch_size:g} of {r.sizes} ({r.trend})"
                     for r in opt.itertuples())
    trends = set(opt["trend"])
    if MINIMUM in trends:
        return FindingCheck(claim, paper, here, True)
    if trends == {FALLING}:
        return FindingCheck(claim, paper, here, None, "energy still falls at the largest batch size tried: try larger "
                       "ones to find where it levels off")
    return FindingCheck(claim, paper, here, False, "energy per sample rises with batch size from the smallest tried: "
                   "the devices are already saturated at small batches, or larger batches spill out of cache/memory")


def energy_time_linearity(runs: pd.DataFrame) -> FindingCheck:
    """Energy is linear in time, r = 0.99 (paper §6.1.2): so a short profile predicts a long run."""
    claim, paper = "energy is linear in time", "Pearson r = 0.99"
    rs = []
    for phase in ("train", "inference"):
        e, t = f"{phase}_energy_J", f"{phase}_time_s"
        if e not in runs or t not in runs:
            continue
        for hw, g in runs.groupby("hardware", sort=True):
            x, y = _num(g[t]), _num(g[e])
            ok = x.notna() & y.notna()
            if ok.sum() >= MIN_RUNS and x[ok].nunique() > 1 and y[ok].nunique() > 1:
                rs.append((phase, hw, float(stats.pearsonr(x[ok], y[ok]).statistic), int(ok.sum())))
    if not rs:
        return FindingCheck(claim, paper, "n/a", None, f"needs at least {MIN_RUNS} runs of different length per hardware")
    here = "; ".join(f"{p} on {hw}: r = {r:.3f} (n = {n})" for p, hw, r, n in rs)
    worst = min(r for _, _, r, _ in rs)
    agrees = worst >= 0.95
    why = "" if agrees else ("mean power differs between these runs (models or batch sizes that load the devices "
                             "differently), so time alone does not fix energy")
    return FindingCheck(claim, paper, here, agrees, why)


def check_findings(runs: pd.DataFrame, inference_metrics: pd.DataFrame) -> list[FindingCheck]:
    """The four findings the project reproduces, in the paper's order."""
    energy = "inference_energy_J" if _num(runs.get("inference_energy_J", pd.Series(dtype=float))).notna().sum() \
        >= MIN_RUNS else "train_energy_J"
    return [train_inference_ratio(runs), macs_param_correlation(runs, inference_metrics, energy),
            batch_size_finding(runs, names.ENERGY_PER_SAMPLE_TRAIN), energy_time_linearity(runs)]
