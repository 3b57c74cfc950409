"""Starting the metric delivery process (:mod:`green_mlops.mlflow.delivery`), and ``sync`` of spooled metrics.

The process is a fresh interpreter (never a fork holding CUDA, never a re-run of the user's ``__main__``),
with its own copy of the environment in which MLflow's HTTP retries are off and the timeout short.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from green_mlops.mlflow import skinny
from green_mlops.mlflow.delivery import REQUEST_TIMEOUT_S
from green_mlops.mlflow.spool import SpoolFile, SyncReport, default_spool_dir, spooled_runs


def absolute_uri(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute, so that a later ``sync`` from elsewhere finds the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + os.path.abspath(uri[len(prefix):])
    return uri


def delivery_env() -> dict[str, str]:
    """The delivery process's environment: the user's, with MLflow's own HTTP retries off and a short timeout.

    Only this copy is changed; ``os.environ`` of the user's process is left as it is.
    """
    env = dict(os.environ)
    try:
        user_timeout = int(env.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120"))
    except ValueError:
        user_timeout = 120
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, min(user_timeout, REQUEST_TIMEOUT_S)))
    env["MLFLOW_DATABRICKS_ENDPOINT_HTTP_RETRY_TIMEOUT"] = str(2 * REQUEST_TIMEOUT_S)
    return env


def spawn(cfg: dict[str, Any]) -> subprocess.Popen:
    """A fresh interpreter running :func:`_child_main`, with this process's import path."""
    path = [p for p in sys.path if isinstance(p, str)]
    code = (f"import sys; sys.path[:0] = {path!r}; "
            "from green_mlops.mlflow.delivery import _child_main; _child_main()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=delivery_env(), close_fds=True)
    try:
        proc.stdin.write(pickle.dumps(cfg, pickle.HIGHEST_PROTOCOL))  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    except OSError:
        proc.kill()
        raise
    return proc



def sync(spool_dir: str | Path | None = None, tracking_uri: str | None = None) -> SyncReport:
    """Deliver the spooled metrics of every run in ``spool_dir``, oldest first; what fails stays spooled.

    ``tracking_uri`` sends them to another server than the one each record names. Delivery runs in a
    short-lived process with the same fast-failing settings as the writer's, so a server that is
    still down costs seconds, and this process's MLflow settings are left alone.
    """
    directory = Path(spool_dir) if spool_dir is not None else default_spool_dir()
    if not spooled_runs(directory):
        return SyncReport()
    uris = ([tracking_uri] if tracking_uri else
            [SpoolFile(directory, run_id).first_tracking_uri() for run_id in spooled_runs(directory)])
    lean = all(uri is None or skinny.lean_for(uri) for uri in uris)
    cfg = {"mode": "sync", "spool_dir": str(directory), "tracking_uri": tracking_uri,
           "skinny": skinny.OPTIONAL if lean else ()}
    try:
        proc = spawn(cfg)
        out, _ = proc.communicate()
        if proc.returncode == skinny.EXIT_NEEDS_FULL_IMPORTS:  # a store plugin needs pandas or numpy
            proc = spawn({**cfg, "skinny": ()})
            out, _ = proc.communicate()
        report = pickle.loads(out) if proc.returncode == 0 and out else None
        error = f"the delivery process exited with code {proc.returncode}"
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        report, error = None, f"{type(exc).__name__}: {exc}"
    if report is None:
        report = SyncReport()
        for run_id in spooled_runs(directory):
            report.remaining += SpoolFile(directory, run_id).count()
            report.errors[run_id] = error
    return report
