"""Where the delivery process writes metrics: MLflow's REST ``log-batch``, MLflow's SQLite tables, or MLflow's client.

Importing MLflow's client costs a process about 115 MB and its SQLAlchemy store about 75 µs of CPU per
metric (ORM objects, a session, a run query per call). The delivery process needs neither for the two
stores most runs use, so it writes to them directly, the way MLflow itself does, with the standard library:

* ``http(s)://`` (an ``mlflow server``): a POST of ``/api/2.0/mlflow/runs/log-batch``, the request MLflow's
  own client sends, with MLflow's authentication and TLS settings (:mod:`green_mlops.mlflow.rest`).
* ``sqlite:///``: the two tables MLflow's ``log_batch`` writes (:mod:`green_mlops.mlflow.sqlite`).

Anything else (PostgreSQL, MySQL, Databricks, a store plugin, an auth plugin, request-header plugins,
``~/.mlflow/credentials``, a workspace) goes through ``MlflowClient.log_batch`` as before, and so does
every store when ``GREEN_MLOPS_MLFLOW_CLIENT=1`` is set (the way back, should a direct write ever differ).
"""
from __future__ import annotations

import functools
import numbers
import os
import posixpath
import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from green_mlops.mlflow.wire import Record

# MLflow settings the direct REST path does not reproduce: with any of them set, MLflow's client delivers
_CLIENT_ONLY_ENV = ("MLFLOW_TRACKING_AUTH", "MLFLOW_WORKSPACE", "MLFLOW_ENABLE_DB_SDK")
TRUE = ("true", "1", "yes", "on")
CLIENT_ENV = "GREEN_MLOPS_MLFLOW_CLIENT"  # set to 1: deliver through MLflow's client for every store
MAX_KEY_LENGTH = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
_NAME = re.compile(r"^[/\w.\- ]*$" if os.name == "nt" else r"^[/\w.\- :]*$")  # MLflow's rule for metric names


class StoreError(Exception):
    """The store answered and refused a batch; ``status`` as HTTP (400: invalid, 404: no such run, 5xx: busy)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    def get_http_status_code(self) -> int:
        """The same accessor as ``MlflowException``'s, so callers treat both alike."""
        return self.status


class MetricStore(Protocol):
    """Writes one run's metrics; raises on failure (``StoreError`` when the store refused them)."""

    def log_metrics(self, run_id: str, records: Sequence[Record]) -> None: ...

    def set_timeout(self, seconds: float) -> None: ...


def invalid_metric(record: Record) -> bool:
    """True when MLflow's own validation (``mlflow.utils.validation._validate_metric``) refuses ``record``."""
    key, value, timestamp, step = record
    if not isinstance(key, str) or _invalid_key(key):
        return True
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return True
    return not isinstance(timestamp, numbers.Number) or timestamp < 0 or not isinstance(step, numbers.Number)


@functools.lru_cache(maxsize=4096)  # a run has few metric names, and every step repeats them
def _invalid_key(key: str) -> bool:
    if len(key) > MAX_KEY_LENGTH or not _NAME.match(key):
        return True
    norm = posixpath.normpath(key)
    return norm != key or norm == "." or norm.startswith("..") or norm.startswith("/")


def rest_supported(env: dict[str, str] | None = None) -> bool:
    """Whether MLflow's client would send a plain request: no auth plugin, credentials file or header plugin."""
    env = os.environ if env is None else env
    if any(env.get(k) for k in _CLIENT_ONLY_ENV) or env.get("MLFLOW_TRACKING_AWS_SIGV4", "").lower() in TRUE:
        return False
    if (Path.home() / ".mlflow" / "credentials").exists():
        return False
    from importlib.metadata import entry_points

    return not list(entry_points(group="mlflow.request_header_provider"))


class ClientStore:
    """``MlflowClient.log_batch``: every store MLflow knows, at the price of importing MLflow."""

    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(uri)

    def set_timeout(self, seconds: float) -> None:
        """MLflow reads its request timeout from the environment per request; this process's copy is ours."""
        if os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") == "0":  # only in our delivery process
            os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(seconds))

    def log_metrics(self, run_id: str, records: Sequence[Record]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(run_id, metrics=[Metric(k, v, ts, s) for k, v, ts, s in records])


def open_store(uri: str, timeout: float) -> MetricStore:
    """The cheapest store that writes ``uri`` exactly as MLflow would (MLflow's client when ``CLIENT_ENV`` is set)."""
    if os.environ.get(CLIENT_ENV, "").strip().lower() not in TRUE:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme in ("http", "https") and rest_supported():
            from green_mlops.mlflow.rest import RestStore

            return RestStore(uri, timeout)
        if scheme == "sqlite":
            from green_mlops.mlflow.sqlite import SqliteStore

            store = SqliteStore.open(uri, timeout)
            if store is not None:
                return store
    return ClientStore(uri)
