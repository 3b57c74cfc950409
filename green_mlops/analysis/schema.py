"""The runs schema: every column name of an exported ``runs.csv`` and of the analysis' run table, in one place.

Writers (the zoo export, ``green-mlops report``) and readers (:mod:`green_mlops.analysis.runs`) take their
names from here, so the two cannot drift. ``EXPORT`` maps the MLflow name a run carries (param, metric or
tag, as ``mlflow.search_runs`` prefixes them) to the flat name of the exported file; :func:`from_export`
turns such a file back into ``mlflow.search_runs`` rows, so a file and a live experiment load alike.

Windows: ``energy/fit_*`` and ``energy/predict_*`` cover the whole stage, the window of ``time/fit_s`` and
``time/predict_s``. The per-step ``energy/{gpu,cpu,dram}_J`` and ``energy/net_J`` stop at the last training
step, so they are never divided by the fit's time (see :data:`STEP_WINDOW`).
"""
from __future__ import annotations

import pandas as pd

from green_mlops import names

__all__ = ["DOMAINS", "EXPORT", "EXPORT_COLUMNS", "METHOD_PROVENANCE", "PHASES", "STAGE", "STEP_WINDOW",
           "device_col", "from_export", "idle_col", "idle_metric", "is_export", "net_col", "per_sample_col",
           "power_col", "stage_metric", "to_export"]

DOMAINS = ("gpu", "cpu", "dram")
PHASES = ("train", "inference")
#: The Lightning stage each phase's whole-stage metrics are logged under in an export.
STAGE = {"train": "fit", "inference": "predict"}

#: Whether each metering method measures or estimates (the SourceInfo of each source in green_mlops/meter).
METHOD_PROVENANCE = {"nvml-energy-counter": "measured", "nvml-power-samples": "measured",
                     "nvml-power-instant": "measured", "nvml-power-average": "measured", "rapl": "measured",
                     "tdp-utilisation-model": "estimated", "per-gb-model": "estimated",
                     "dimm-cv2f-model": "estimated"}


def stage_metric(stage: str, domain: str | None = None, net: bool = False) -> str:
    """The MLflow end-of-run metric of a stage's energy: ``energy/fit_J``, ``energy/predict_gpu_net_J``, …"""
    return names.stage_energy(stage, domain, net)


def idle_metric(domain: str = "total") -> str:
    """The MLflow metric of the idle power measured before a run, per device or in total."""
    return names.idle_power(domain)


def _export() -> dict[str, str]:
    out = {f"params.{p}": p for p in ("arch", "batch_size", "repeat", "seed")}
    out.update({f"params.{names.param(p)}": p for p in ("macs", "flops", "total_params", "trainable_params",
                                                         "model_size_bytes")})
    out["metrics.accuracy"] = "accuracy"
    for phase, stage in STAGE.items():
        out[f"metrics.{names.duration(stage)}"] = f"{phase}_time_s"
        out[f"metrics.{stage_metric(stage)}"] = f"{phase}_energy_J"
        out[f"metrics.{stage_metric(stage, net=True)}"] = f"{phase}_net_J"
        for d in DOMAINS:
            out[f"metrics.{stage_metric(stage, d)}"] = f"{phase}_{d}_J"
            out[f"metrics.{stage_metric(stage, d, net=True)}"] = f"{phase}_{d}_net_J"
    for d in (*DOMAINS, "total"):
        out[f"metrics.{idle_metric(d)}"] = f"idle_{d}_W"
    out[f"metrics.{names.metric(names.ENERGY_PER_SAMPLE_TRAIN)}"] = "train_energy_per_sample_J"
    out[f"metrics.{names.metric(names.ENERGY_PER_SAMPLE_INFERENCE)}"] = "inference_energy_per_sample_J"
    out[f"metrics.{names.samples('train')}"] = "train_samples"
    out[f"metrics.{names.samples('predict')}"] = "inference_samples"
    for d in DOMAINS:
        out[f"tags.{names.method_tag(d)}"] = f"method_{d}"
    out[f"tags.{names.hw_tag('gpu_names')}"] = "gpu"
    out[f"tags.{names.hw_tag('cpu_model')}"] = "cpu_model"
    return out


#: MLflow name -> exported column name.
EXPORT: dict[str, str] = _export()
#: The exported runs.csv's columns, in order.
EXPORT_COLUMNS: tuple[str, ...] = tuple(EXPORT.values())
#: Columns only an export with an idle baseline over whole-stage windows has (absent from older exports).
NET_EXPORT_COLUMNS = ("inference_net_J", "train_gpu_net_J", "idle_total_W")
#: ``benchmarks/zoo.py`` names some columns its own way (``search_efficiency.py`` and the committed
#: results/*/zoo/runs.csv use them): zoo name -> the export's name. Its ``round`` is a repeat.
ZOO_ALIASES = {"train_J": "train_energy_J", "inference_J": "inference_energy_J", "gpu_name": "gpu",
               "train_J_per_sample": "train_energy_per_sample_J",
               "inference_J_per_sample": "inference_energy_per_sample_J", "round": "repeat"}
#: The older zoo export named the per-step ``energy/net_J`` (training steps only) ``train_net_J``.
STEP_WINDOW = {"train_net_J": f"metrics.{names.ENERGY_NET}",
               **{f"train_{d}_J": f"metrics.{names.energy(d)}" for d in DOMAINS}}


def is_export(df: pd.DataFrame) -> bool:
    """True for a flat exported runs.csv (``arch`` and ``method_gpu``, no MLflow prefixes, no run table)."""
    return "arch" in df and "hardware" not in df and not any(c.startswith(("metrics.", "params.")) for c in df)


def from_export(df: pd.DataFrame) -> pd.DataFrame:
    """A flat export as ``mlflow.search_runs`` rows. An older export (no idle columns) keeps its per-step
    ``train_*`` energies under their per-step MLflow names, so nothing reads them as whole-fit energies; the
    zoo benchmark's own column names (:data:`ZOO_ALIASES`) read as the export's."""
    df = df.rename(columns={z: flat for z, flat in ZOO_ALIASES.items() if z in df and flat not in df})
    to_mlflow = {flat: mlflow for mlflow, flat in EXPORT.items()}
    if not any(c in df for c in NET_EXPORT_COLUMNS):
        to_mlflow.update(STEP_WINDOW)
    out = df.rename(columns={c: to_mlflow.get(c, f"params.{c}") for c in df.columns})
    for d in DOMAINS:
        col = f"tags.{names.method_tag(d)}"
        if col in out:  # "nvml-energy-counter", or the zoo's "measured:nvml-energy-counter"
            split = out[col].astype(str).str.extract(r"^(measured|estimated):(.+)$")
            given = split[0].notna()
            out[col] = out[col].where(~given, split[1])
            out[f"tags.{names.provenance_tag(d)}"] = split[0].where(given, out[col].map(METHOD_PROVENANCE)).fillna(
                "unknown")
    gpu_names, gpu_count = f"tags.{names.hw_tag('gpu_names')}", f"tags.{names.hw_tag('gpu_count')}"
    if gpu_names in out and gpu_count not in out:
        out[gpu_count] = out[gpu_names].notna().astype(int).astype(str)
    if "run_id" not in out:
        parts = [out[c].astype(str) for c in ("params.arch", "params.batch_size", "params.repeat") if c in out]
        out.insert(0, "run_id", pd.concat(parts, axis=1).agg("-".join, axis=1) if parts else out.index.astype(str))
    return out


def to_export(raw: pd.DataFrame) -> pd.DataFrame:
    """``mlflow.search_runs`` rows as the flat export (the writer's half of :func:`from_export`): the
    :data:`EXPORT` columns present, renamed, in :data:`EXPORT_COLUMNS` order; numbers as numbers."""
    out = raw[[c for c in EXPORT if c in raw]].rename(columns=EXPORT)
    for c in out.columns:
        if c not in ("arch", "gpu", "cpu_model") and not c.startswith("method_"):
            out[c] = pd.to_numeric(out[c], errors="coerce")
    return out.reset_index(drop=True)


def device_col(phase: str, domain: str) -> str:
    """Gross energy of one device over the phase's whole window, in the run table."""
    return f"{phase}_energy_{domain}_J"


def net_col(phase: str, domain: str | None = None) -> str:
    """Net-of-idle energy (Eq. 1–2) of the phase, all devices (``domain`` None) or one, in the run table."""
    return f"{phase}_net_J" if domain is None else f"{phase}_net_{domain}_J"


def power_col(phase: str, domain: str) -> str:
    """Mean gross power of one device over the phase's window, in the run table."""
    return f"{phase}_power_{domain}_W"


def idle_col(domain: str = "total") -> str:
    """Idle power measured before the run, per device or in total, in the run table."""
    return f"idle_{domain}_W"


def per_sample_col(phase: str, net: bool) -> str:
    """Energy per sample of the phase: the callback's gross metric, or net energy over the phase's samples."""
    if net:
        return f"{phase}_net_per_sample_J"
    return names.ENERGY_PER_SAMPLE_TRAIN if phase == "train" else names.ENERGY_PER_SAMPLE_INFERENCE
