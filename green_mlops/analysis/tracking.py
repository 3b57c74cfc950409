"""MLflow access for the analysis: the experiment, its runs, metric histories and the callback's artifacts.

Runs are read with ``mlflow.search_runs`` (one row per run, ``metrics.*``/``params.*``/``tags.*``
columns); everything else goes through an ``MlflowClient`` bound to the same tracking URI.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Experiment
from mlflow.tracking import MlflowClient

from green_mlops import names
from green_mlops.analysis.errors import FIRST_RUN_HINT, AnalysisError, ExperimentNotFound
from green_mlops.redact import redact_text, redact_uri

__all__ = ["REPORT_ROLE", "ROLE_TAG", "SWEEP_ROLE_TAG", "artifact_names", "find_experiment", "history",
           "log_report", "read_summary", "read_utilisation", "search_runs", "using_tracking_uri"]

SWEEP_ROLE_TAG = names.SWEEP_ROLE
ROLE_TAG = names.ANALYSIS_ROLE
REPORT_ROLE = "report"
_PROGRESS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
ARTIFACT_DIR = names.ARTIFACT_DIR


@contextlib.contextmanager
def using_tracking_uri(uri: str | None) -> Iterator[None]:
    """Point MLflow's fluent API at ``uri`` for the block, then restore what was set before."""
    if uri is None:
        yield
        return
    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def find_experiment(client: MlflowClient, name: str) -> Experiment:
    """The experiment called ``name``; else an error listing the experiments that do exist there."""
    from green_mlops.mlflow.uploads import fast_failing

    try:
        with fast_failing():  # a dead server is refused in seconds, not after MLflow's minutes of retries
            exp = client.get_experiment_by_name(name)
            if exp is None or exp.lifecycle_stage == "deleted":
                names = sorted(e.name for e in client.search_experiments(max_results=50))
    except Exception as exc:  # a server that is down or a bad URI: say so plainly
        raise AnalysisError(f"cannot read MLflow at {redact_uri(client.tracking_uri)}: {type(exc).__name__}: "
                            f"{redact_text(str(exc), client.tracking_uri)}\n"
                            "Start the tracking server, or pass --tracking-uri (e.g. sqlite:///mlflow.db)") from None
    if exp is None or exp.lifecycle_stage == "deleted":
        known = ", ".join(repr(n) for n in names if n != "Default") or "none"
        raise ExperimentNotFound(f"no MLflow experiment named {name!r} at {redact_uri(client.tracking_uri)} "
                                 f"(experiments there: {known}).\nCheck the name or --tracking-uri, or {FIRST_RUN_HINT}")
    return exp


def search_runs(experiment_id: str, tracking_uri: str) -> pd.DataFrame:
    """Every finished run of the experiment, newest first, as ``mlflow.search_runs`` returns them."""
    with using_tracking_uri(tracking_uri):
        df = mlflow.search_runs(experiment_ids=[experiment_id], filter_string="attributes.status = 'FINISHED'",
                                output_format="pandas")
    return df if isinstance(df, pd.DataFrame) else pd.DataFrame()


def history(client: MlflowClient, run_id: str, key: str) -> pd.DataFrame:
    """A metric's history as columns ``step``, ``timestamp``, ``value``, in logging order."""
    rows = [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]
    return pd.DataFrame(rows, columns=["step", "timestamp", "value"]).sort_values(["step", "timestamp"],
                                                                                   kind="stable", ignore_index=True)


def artifact_names(client: MlflowClient, run_id: str) -> set[str]:
    """File names EnergyCallback left under the run's ``green_mlops/`` artifact folder (empty if none)."""
    try:
        return {Path(a.path).name for a in client.list_artifacts(run_id, ARTIFACT_DIR) if not a.is_dir}
    except Exception:  # an artifact store out of reach: the metrics still serve
        return set()


def _download(client: MlflowClient, run_id: str, name: str, dst: str) -> Path:
    """Download quietly: MLflow's per-file progress bar would drown the report's own output."""
    previous = os.environ.get(_PROGRESS)
    os.environ[_PROGRESS] = "false"
    try:
        return Path(client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{name}", dst))
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS, None)
        else:
            os.environ[_PROGRESS] = previous


def read_summary(client: MlflowClient, run_id: str, stage: str) -> dict[str, Any] | None:
    """The callback's ``{stage}_summary.json`` (energy per device, duration, provenance), or None."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return json.loads(_download(client, run_id, names.summary_file(stage), tmp).read_text())
        except Exception:  # absent or unreadable: the caller falls back to metrics
            return None


def read_utilisation(client: MlflowClient, run_id: str, stage: str) -> dict[str, Any]:
    """Mean utilisation over ``{stage}_trace.parquet``, as fractions: GPUs' where any, else the CPUs'.

    Keys: ``util`` and ``util_device`` ("gpu" or "cpu"), and ``gpu_mem_util`` (NVML's memory-controller
    utilisation) when the run had GPUs. Empty when the trace is missing.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            df = pd.read_parquet(_download(client, run_id, names.trace_file(stage), tmp))
        except Exception:  # no trace: no utilisation, said by its absence
            return {}
    gpu = [c for c in df.columns if c.startswith("gpu") and c.endswith(".util_pct") and ".mem_" not in c]
    mem = [c for c in df.columns if c.startswith("gpu") and c.endswith(".mem_util_pct")]
    out: dict[str, Any] = {}
    if gpu and df[gpu].notna().any().any():
        out = {"util": float(df[gpu].mean().mean()) / 100, "util_device": "gpu"}
        if mem and df[mem].notna().any().any():
            out["gpu_mem_util"] = float(df[mem].mean().mean()) / 100
    elif "host.cpu_util_pct" in df and df["host.cpu_util_pct"].notna().any():
        out = {"util": float(df["host.cpu_util_pct"].mean()) / 100, "util_device": "cpu"}
    return out


def log_report(client: MlflowClient, experiment_id: str, files: list[Path], params: dict[str, Any]) -> str:
    """A finished run named "report" holding ``files`` under ``report/``; the loader skips such runs."""
    run = client.create_run(experiment_id, tags={"mlflow.runName": "report", ROLE_TAG: REPORT_ROLE})
    run_id = run.info.run_id
    try:
        for k, v in params.items():
            client.log_param(run_id, k, str(v)[:6000])
        for f in files:
            client.log_artifact(run_id, str(f), artifact_path="report")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id
