"""MLflow: one parent run per sweep and one nested run per rate level, with tables and figures as artifacts.

Level metrics carry both this package's names (``energy_per_request_J`` …) and the paper's Table 6
names (``energy_per_sample``, ``request_rate``, ``cache_hit_rate``, ``average_output_token_length``).
Tags say where the energy was measured and by which method, so a remote server's numbers are never
mistaken for the client's; each level's run also says how its warm-up and steady window were sized,
which estimator priced its requests and how the load generator's CPU was split off.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from green_mlops import names
from green_mlops.genai.aggregate import ESTIMATOR, SweepAnalysis
from green_mlops.genai.record import SweepRecord
from green_mlops.meter import EnergyResult
from green_mlops.metrics.genai import LEVEL_PROVENANCE, SWEEP_SERIES

TEXT_COLUMNS = set(LEVEL_PROVENANCE)


def level_metrics(row: dict[str, Any]) -> dict[str, float]:
    """The numeric columns of a level row as MLflow metrics (NaN left out), plus the paper's names."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key in TEXT_COLUMNS or key == "level":
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isnan(number):
            out[key] = number
    for ours, paper in names.GENAI_PAPER_NAMES.items():
        if ours in out:
            out[paper] = out[ours]
    return out


def log_sweep(record: SweepRecord, analysis: SweepAnalysis, files: Sequence[Path], *, experiment: str,
              tracking_uri: str | None = None, energy_description: str = "",
              sample_energy: EnergyResult | None = None, run_name: str | None = None) -> str:
    """Log the sweep to MLflow; return the parent run's id."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    params = record.params
    name = run_name or f"genai {params.get('model', '')} @ {params.get('rates_rps', '')} rps"
    sat = analysis.saturation
    with mlflow.start_run(run_name=name) as parent:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        tags = {names.genai_tag("energy_source"): energy_description or "not metered",
                names.genai_tag("saturation"): str(sat), names.genai_tag("saturation_criterion"): sat.criterion,
                names.genai_tag("estimator"): ESTIMATOR}
        if sample_energy is not None:
            for domain in ("gpu", "cpu", "dram"):
                parts = [s.info for s in sample_energy.sources if s.info.domain == domain]
                if parts:
                    tags[names.method_tag(domain)] = ",".join(sorted({p.method for p in parts}))
                    tags[names.provenance_tag(domain)] = ",".join(sorted({p.provenance for p in parts}))
        if record.notes:
            tags[names.genai_tag("notes")] = " | ".join(record.notes)[:5000]
        mlflow.set_tags(tags)
        if sat.rate_rps is not None:
            mlflow.log_metric(names.SATURATION_RATE, sat.rate_rps)
        for _, row in analysis.levels.iterrows():
            metrics = level_metrics(row.to_dict())
            mlflow.log_metrics({k: metrics[k] for k in SWEEP_SERIES if k in metrics}, step=int(row["level"]))
            with mlflow.start_run(run_name=f"{row[names.RATE]:g} rps", nested=True):
                mlflow.log_params({names.RATE: f"{row[names.RATE]:g}", "level": int(row["level"])})
                mlflow.log_metrics(metrics)
                mlflow.set_tags({names.genai_tag(k): str(row[k])[:5000] for k in TEXT_COLUMNS if row.get(k)})
                mlflow.set_tags({k: v for k, v in tags.items() if k.startswith((names.METHOD_TAG_PREFIX,
                                                                              names.PROVENANCE_TAG_PREFIX))})
        for path in files:
            mlflow.log_artifact(str(path), artifact_path=names.GENAI_ARTIFACT_DIR)
        return parent.info.run_id
