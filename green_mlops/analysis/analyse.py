"""Everything the report shows, computed once from the run table: metrics, correlations, the energy
predictor, the paper's findings and the figures. What cannot be computed is kept as a sentence saying
why, never as an empty or NaN table."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from green_mlops import names
from green_mlops.analysis import figures
from green_mlops.analysis.basis import Basis, choose_basis
from green_mlops.analysis.correlation import Correlations, correlations, one_batch_size
from green_mlops.analysis.errors import AnalysisError
from green_mlops.analysis.findings import FindingCheck, batch_size_optimum, check_findings
from green_mlops.analysis.paper_metrics import paper_metrics
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.metrics.genai import GENAI_METRICS
from green_mlops.metrics.numbers import with_columns
from green_mlops.metrics.paper import PAPER_METRICS

__all__ = ["Analysis", "analyse"]

#: What each correlation table correlates with, over which phase's metrics.
TARGETS = {"inference": "inference energy (the paper's Table 3)", "train": "training energy"}
#: Table 6 metrics that only LLM serving runs have; their presence makes a run table a GenAI one.
GENAI_ONLY = ("request_rate", "cache_hit_rate", "average_output_token_length", "energy_per_output_token")
#: Known before serving: what the paper's GenAI Lasso used (§7: RPS, cache hit rate, output length) and model size.
GENAI_FEATURES = ("request_rate", "cache_hit_rate", "average_output_token_length", "parameters", "flops",
                  "model_size_to_ram")


@dataclass
class Analysis:
    """The results, each either computed or replaced by the reason it could not be."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    metrics: dict[str, pd.DataFrame]  # phase -> Table 3 metrics per run
    basis: Basis  # net or gross energy, used by everything below
    table: pd.DataFrame = field(default_factory=pd.DataFrame)  # runs + training-window metrics: the predictor's input
    correlations: dict[str, Correlations | str] = field(default_factory=dict)
    predictor: EnergyPredictor | str = "not fitted"
    findings: list[FindingCheck] = field(default_factory=list)
    batch_sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    figures: dict[str, Figure | str] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    searches: pd.DataFrame = field(default_factory=pd.DataFrame)  # what each sweep cost (analysis/searches.py)
    deferrals: pd.DataFrame = field(default_factory=pd.DataFrame)  # points a sweep's predictor never trained


def _correlation_input(runs: pd.DataFrame, table: pd.DataFrame, target: str) -> pd.DataFrame:
    extra = [c for c in ("macs", "model", "batch_size") if c in runs]
    return pd.concat([table, runs[["hardware", target, *extra]]], axis=1)


def analyse(runs: pd.DataFrame, epochs: pd.DataFrame | None = None, *, with_figures: bool = True) -> Analysis:
    """Compute every table and figure of the report from ``runs`` (and per-epoch rows for Fig. 5)."""
    epochs = epochs if epochs is not None else pd.DataFrame()
    basis = choose_basis(runs)
    tables = {phase: paper_metrics(runs, phase, basis) for phase in ("inference", "train")}
    table = with_columns(runs, **tables["train"])  # logged values kept: see paper_metrics
    out = Analysis(runs, epochs, tables, basis, table, notes=list(runs.attrs.get("notes", [])))
    same_batch, batch_notes = one_batch_size(runs)
    for phase in TARGETS:
        target = basis.energy(phase)
        if target not in runs or runs[target].notna().sum() == 0:
            out.correlations[phase] = f"no run has {target}"
            continue
        try:
            c = correlations(_correlation_input(runs, tables[phase], target)[same_batch], target,
                             [*PAPER_METRICS, "macs"])
            c.notes[:0] = batch_notes
            out.correlations[phase] = c
        except AnalysisError as exc:
            out.correlations[phase] = str(exc)
    genai = any(m in runs for m in GENAI_ONLY) and "energy_per_sample" in runs
    if genai:
        try:
            out.correlations["genai"] = correlations(runs, "energy_per_sample",
                                                     [*GENAI_METRICS, names.ENERGY_PER_OUTPUT_TOKEN])
        except AnalysisError as exc:
            out.correlations["genai"] = str(exc)
    try:
        if genai and runs["train_energy_J"].isna().all():  # LLM serving runs only: the paper's GenAI Lasso
            feats = [m for m in GENAI_FEATURES if m in runs and pd.to_numeric(runs[m], errors="coerce").nunique() > 1]
            out.predictor = EnergyPredictor.fit(runs, target="energy_per_sample", features=feats)
        else:
            out.predictor = EnergyPredictor.fit(table, target=basis.per_sample("train"))
    except AnalysisError as exc:
        out.predictor = str(exc)
    out.findings = check_findings(runs, tables["inference"], basis)
    out.batch_sizes = batch_size_optimum(runs, basis.per_sample("train"))
    if with_figures:
        makers = {
            "Training and inference time per model (Fig. 2)": lambda: figures.time_per_model(runs),
            "Average power per device (Fig. 3)": lambda: figures.power_per_device(runs),
            "Loss, accuracy and cumulative energy per epoch (Fig. 5)": lambda: figures.epoch_curves(epochs),
            "Energy against MACs per parameter (Fig. 6)":
                lambda: figures.energy_vs_macs_param(runs[same_batch], tables["train"][same_batch],
                                                     tables["inference"][same_batch], basis),
            "Energy and utilisation against batch size (Fig. 7)": lambda: figures.batch_size_effect(runs, basis),
            "Energy against time": lambda: figures.energy_vs_time(runs, basis),
        }
        for title, make in makers.items():
            try:
                out.figures[title], out.captions[title] = make()
            except AnalysisError as exc:
                out.figures[title] = str(exc)
    return out
