"""What each sweep in an experiment cost, and the points its predictor deferred, read from its parent run.

``green-mlops sweep`` logs ``search/*`` metrics (total energy of every trial, the front's energy, trials
pruned and deferred) and ``search_cost.json`` (the same plus every deferral with its prediction) on the
study's parent run; the report shows them so a user can check what the search spent and skipped.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from green_mlops import names
from green_mlops.analysis import tracking

__all__ = ["COST_ARTIFACT", "load_searches"]

COST_ARTIFACT = "search_cost.json"
STUDY_TAG = names.SWEEP_STUDY
_COLUMNS = {"search/total_J": "search energy J (all trials)", "search/front_J": "front lifecycle J",
            "search/front_trials": "front trials", "search/trials_complete": "complete",
            "search/trials_pruned": "pruned", "search/pruned_J": "pruned J", "search/trials_failed": "failed",
            "search/failed_J": "failed J", "search/trials_deferred": "deferred"}


def _cost_file(client: MlflowClient, run_id: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(Path(client.download_artifacts(run_id, COST_ARTIFACT, tmp)).read_text())
        except Exception:  # a sweep from before search costs were logged: metrics only
            return {}


def load_searches(client: MlflowClient, experiment_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per sweep parent run with its cost, one row per deferred point); empty frames when none."""
    raw = tracking.search_runs(experiment_id, client.tracking_uri)
    col = f"tags.{tracking.SWEEP_ROLE_TAG}"
    if raw.empty or col not in raw:
        return pd.DataFrame(), pd.DataFrame()
    parents = raw[raw[col].eq("parent")]
    rows, deferred = [], []
    for r in parents.to_dict("records"):
        if pd.isna(r.get("metrics.search/total_J")):
            continue
        study = r.get(f"tags.{STUDY_TAG}") or r.get("run_id")
        rows.append({"study": study, "parent run": r["run_id"],
                     **{label: r.get(f"metrics.{k}") for k, label in _COLUMNS.items()}})
        for d in _cost_file(client, r["run_id"]).get("deferrals", []):
            p = d.get("params", {})
            deferred.append({"study": study, "trial": d.get("trial"), "arch": p.get("arch"),
                             "batch_size": p.get("batch_size"), "lr": p.get("lr"),
                             "predicted lifecycle J": d.get("predicted_lifecycle_J"),
                             "predicted training J": d.get("predicted_training_J"),
                             "best-case accuracy": d.get("best_case_accuracy"),
                             "dominated by trial": d.get("dominated_by"),
                             "its accuracy": d.get("dominator_accuracy"),
                             "its lifecycle J": d.get("dominator_lifecycle_J"), "margin": d.get("margin")})
    return pd.DataFrame(rows), pd.DataFrame(deferred)
