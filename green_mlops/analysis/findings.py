"""The paper's headline findings, checked on these runs: each says what the paper found, what the runs show
with a bootstrap 95 % interval, and a verdict derived from that interval (:mod:`green_mlops.analysis.verdict`),
with why when it is not "agrees"."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from green_mlops.analysis import batch_size as bs
from green_mlops.analysis.basis import Basis, choose_basis
from green_mlops.analysis.correlation import one_batch_size
from green_mlops.analysis.schema import DOMAINS, METHOD_PROVENANCE
from green_mlops.analysis.uncertainty import (
    MIN_CONFIGS,
    MIN_REPEATS,
    config_means,
    correlation_interval,
    median_interval,
)
from green_mlops.analysis.verdict import AGREES, BY_CONSTRUCTION, CANNOT_TELL, DIFFERS, TOO_FEW, judge
from green_mlops.metrics.numbers import column, numbers, with_columns

__all__ = ["FindingCheck", "batch_size_optimum", "check_findings", "combine", "constant_power_devices"]

batch_size_optimum = bs.batch_size_optimum
RATIO_REGION, RHO_REGION, R_REGION = (2.0, 4.0), (0.7, 1.0), (0.95, 1.0)
CONSTANT_CV = 0.05  # an estimated device whose mean power varies less than 5 % across runs: a constant model
_PROV = re.compile(r"\b(gpu|cpu|dram): (\w+) \(([^)]+)\)")


@dataclass(frozen=True)
class FindingCheck:
    """One of the paper's claims against these runs; ``verdict`` is one of verdict.VERDICTS."""

    claim: str
    paper: str
    here: str
    verdict: str
    why: str = ""
    region: str = ""

    @property
    def agrees(self) -> bool | None:
        """True for "agrees", False for "differs", None for any verdict that decides nothing."""
        return True if self.verdict == AGREES else (False if self.verdict == DIFFERS else None)


def combine(verdicts: list[str]) -> str:
    """One verdict over several hardware configurations: any "differs" wins, then "cannot tell", then
    "agrees"; groups with too few runs count only when no group could be judged."""
    for v in (DIFFERS, CANNOT_TELL, AGREES, BY_CONSTRUCTION):
        if v in verdicts:
            return v
    return TOO_FEW


def _one_size(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    keep, _ = one_batch_size(runs)
    sizes = numbers(runs.loc[keep, "batch_size"]).dropna().unique() if "batch_size" in runs else []
    return runs[keep], (f" at batch size {sizes[0]:g}" if len(sizes) == 1 and runs["batch_size"].nunique() > 1 else "")


def train_inference_ratio(runs: pd.DataFrame) -> FindingCheck:
    """Training takes ≈3× the time of inference over the same number of samples (paper §6.1.1)."""
    claim, paper = "training ≈ 3× inference time per sample", "≈3× for most models (r ≈ 0.9); DPN, RegNet deviate"
    region = f"median in {RATIO_REGION[0]:g}×–{RATIO_REGION[1]:g}×"
    need = ["train_time_s", "train_samples", "inference_time_s", "inference_samples"]
    if any(c not in runs for c in need):
        return FindingCheck(claim, paper, "n/a", TOO_FEW, "runs lack train or inference time and sample counts", region)
    sub, at = _one_size(runs)
    ratio = (numbers(sub["train_time_s"]) / numbers(sub["train_samples"])) / (
        numbers(sub["inference_time_s"]) / numbers(sub["inference_samples"]))
    per_config = config_means(with_columns(sub, _ratio=ratio), ["_ratio"])["_ratio"].dropna()
    if per_config.empty:
        return FindingCheck(claim, paper, "n/a", TOO_FEW, "no run has both a training and a test/predict stage metered",
                       region)
    iv = median_interval(per_config)
    here = (f"median {iv.text('.2f')}× over {iv.n} configuration(s){at} (range {per_config.min():.2f}–"
            f"{per_config.max():.2f})")
    verdict = judge(iv, *RATIO_REGION)
    why = {TOO_FEW: f"an interval needs at least {MIN_CONFIGS} configurations",
           CANNOT_TELL: "the interval reaches past 2× or 4×: more models or repeats would decide",
           DIFFERS: "training time here is the whole fit, validation loops included; the backward pass and "
                    "optimiser cost differ relative to the forward pass on this hardware"}.get(verdict, "")
    return FindingCheck(claim, paper, here, verdict, why, region)


def macs_param_correlation(runs: pd.DataFrame, metric_table: pd.DataFrame, energy: str) -> FindingCheck:
    """``macs_param`` correlates with energy (Spearman ρ ≈ 0.9, Table 3), better than MACs (ρ ≈ 0.8)."""
    claim, paper = "macs_param correlates with energy", "Spearman ρ ≈ 0.85–0.92 per hardware (MACs alone ≈ 0.8)"
    region = f"ρ ≥ {RHO_REGION[0]:g}"
    table = with_columns(runs, _mp=numbers(metric_table["macs_param"]) if "macs_param" in metric_table else np.nan,
                         _e=column(runs, energy), _macs=column(runs, "macs"))
    sub, at = _one_size(table)
    parts, verdicts = [], []
    for hw, g in sub.groupby("hardware", sort=True):
        c = config_means(g, ["_mp", "_e", "_macs"]).dropna(subset=["_mp", "_e"])
        if len(c) < 2:
            continue
        iv = correlation_interval(c["_mp"], c["_e"])
        macs = correlation_interval(c["_macs"], c["_e"]) if c["_macs"].notna().all() else None
        verdicts.append(judge(iv, *RHO_REGION))
        parts.append(f"{hw}{at}: ρ = {iv.text()} (n = {iv.n} configurations"
                     + (f"; MACs alone ρ = {macs.text()})" if macs is not None else ")") + f" → {verdicts[-1]}")
    if not parts:
        return FindingCheck(claim, paper, "n/a", TOO_FEW, f"needs at least {MIN_CONFIGS} models on one hardware with "
                       f"macs, trainable_params and {energy}", region)
    verdict = combine(verdicts)
    why = {TOO_FEW: f"an interval on ρ needs at least {MIN_CONFIGS} configurations per hardware",
           CANNOT_TELL: "the interval on ρ reaches below 0.7: more models or repeats would decide",
           DIFFERS: "energy here varies more with run length or kernel count than with the model's arithmetic "
                    "intensity"}.get(verdict, "")
    return FindingCheck(claim, paper, f"{energy}: " + "; ".join(parts), verdict, why, region)


def batch_size_finding(runs: pd.DataFrame, energy: str) -> FindingCheck:
    """Each machine has a batch size past which energy stops falling (paper §6.1.2, Fig. 7)."""
    claim, paper = "an energy-minimising batch size exists", "energy falls with batch size, then stops (every hardware)"
    region = "the interval of the best size lies inside the sizes tried"
    opt = bs.batch_size_optimum(runs, energy)
    if opt.empty:
        return FindingCheck(claim, paper, "n/a", TOO_FEW, "needs runs of one model at two or more batch sizes", region)
    here = f"{energy}: " + "; ".join(bs.describe(r) for _, r in opt.iterrows())
    verdict = combine(list(opt["verdict"]))
    why = {TOO_FEW: f"an interval on the best batch size needs {MIN_REPEATS} or more repeats at every size",
           CANNOT_TELL: "the interval of the best size reaches the largest size tried (energy may still fall: "
                        "try larger sizes) or the smallest",
           DIFFERS: "energy per sample rises with batch size from the smallest tried"}.get(verdict, "")
    return FindingCheck(claim, paper, here, verdict, why, region)


def device_methods(g: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(provenance, method) per device, from the method columns or the provenance text of the runs."""
    out: dict[str, tuple[str, str]] = {}
    for d in DOMAINS:
        m = g.get(f"method_{d}")
        if m is not None and m.notna().any():
            method = str(m.dropna().iloc[0])
            out[d] = (METHOD_PROVENANCE.get(method, "unknown"), method)
    for text in g.get("provenance", pd.Series(dtype=str)).dropna().astype(str).unique():
        for d, prov, method in _PROV.findall(text):
            out.setdefault(d, (prov, method))
    return out


def constant_power_devices(g: pd.DataFrame, phase: str) -> list[str]:
    """Estimated devices whose power is a model that is constant over these runs (a per-GB DRAM model, or a
    TDP × utilisation model whose mean power varies < 5 % across runs): their energy is power × time."""
    out = []
    for d, (prov, method) in device_methods(g).items():
        if prov != "estimated":
            continue
        power = column(g, f"{phase}_power_{d}_W").dropna()
        varies = len(power) > 1 and power.mean() > 0 and power.std() / power.mean() >= CONSTANT_CV
        if method in ("per-gb-model", "dimm-cv2f-model") or not varies:
            out.append(d)
    return out


def energy_time_linearity(runs: pd.DataFrame, basis: Basis | None = None) -> FindingCheck:
    """Energy is linear in time, r = 0.99 (paper §6.1.2). The total is judged only when no device in it is a
    constant-power estimate (then linearity holds by construction); the measured GPU is judged on its own."""
    basis = basis or choose_basis(runs)
    claim, paper, region = "energy is linear in time", "Pearson r = 0.99", f"r ≥ {R_REGION[0]:g}"
    parts, verdicts, whys = [], [], []
    for phase in ("train", "inference"):
        t, e = f"{phase}_time_s", basis.energy(phase)
        if t not in runs or e not in runs:
            continue
        for hw, g in runs.groupby("hardware", sort=True):
            circular = constant_power_devices(g, phase)
            gpu = basis.device(phase, "gpu")
            window = f"{phase}_device_window"
            same_window = bool(g[window].eq("stage").all()) if window in g else False
            measured_gpu = device_methods(g).get("gpu", ("", ""))[0] == "measured" and gpu in g and same_window
            if device_methods(g).get("gpu", ("", ""))[0] == "measured" and not same_window:
                whys.append(f"{phase}: no GPU-only verdict: these runs hold GPU energy over the training steps "
                            "only (or not at all), not over the window of their time")
            c = config_means(g, [t, e, gpu] if gpu in g else [t, e]).dropna(subset=[t, e])
            if len(c) < 2:
                continue
            total = correlation_interval(c[t], c[e], "pearson")
            v = BY_CONSTRUCTION if circular else judge(total, *R_REGION)
            parts.append(f"{phase} on {hw}: r = {total.text('.3f')} (n = {total.n}) → {v}")
            if circular:
                whys.append(f"{phase}: {'/'.join(circular)} energy is an estimate at constant power, so it is time × a constant "
                            "and the total's linearity is partly circular")
            else:
                verdicts.append(v)
            if measured_gpu and c[gpu].notna().sum() >= 2:
                g_iv = correlation_interval(c[t], c[gpu], "pearson")
                verdicts.append(judge(g_iv, *R_REGION))
                parts.append(f"{phase} GPU only (measured) on {hw}: r = {g_iv.text('.3f')} → {verdicts[-1]}")
    if not parts:
        return FindingCheck(claim, paper, "n/a", TOO_FEW, f"needs at least {MIN_CONFIGS} configurations of different length",
                       region)
    verdict = combine(verdicts) if verdicts else BY_CONSTRUCTION
    why = {TOO_FEW: f"an interval on r needs at least {MIN_CONFIGS} configurations",
           CANNOT_TELL: "the interval on r reaches below 0.95",
           DIFFERS: "mean power differs between models or batch sizes, so time alone does not fix energy"}.get(
        verdict, "")
    why = "; ".join(x for x in [why, *dict.fromkeys(whys)] if x)
    return FindingCheck(claim, paper, f"{basis.short} energy: " + "; ".join(parts), verdict, why, region)


def check_findings(runs: pd.DataFrame, inference_metrics: pd.DataFrame, basis: Basis | None = None) -> list[FindingCheck]:
    """The four findings the project reproduces, in the paper's order, on the chosen energy basis."""
    basis = basis or choose_basis(runs)
    inference = basis.energy("inference")
    energy = inference if column(runs, inference).notna().sum() >= MIN_CONFIGS \
        else basis.energy("train")
    return [train_inference_ratio(runs), macs_param_correlation(runs, inference_metrics, energy),
            batch_size_finding(runs, basis.per_sample("train")), energy_time_linearity(runs, basis)]
