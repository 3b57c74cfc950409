"""Where the delivery process writes metrics: MLflow's REST ``log-batch``, MLflow's SQLite tables, or MLflow's client.

Importing MLflow's client costs a process about 115 MB and its SQLAlchemy store about 75 µs of CPU per
metric (ORM objects, a session, a run query per call). The delivery process needs neither for the two
stores most runs use, so it writes to them directly, the way MLflow itself does, with the standard library:

* ``http(s)://`` (an ``mlflow server``): a POST of ``/api/2.0/mlflow/runs/log-batch``, the request MLflow's
  own client sends, with MLflow's authentication settings (credentials in the URI,
  ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``, ``MLFLOW_TRACKING_TOKEN``) and TLS settings
  (``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH``, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``).
* ``sqlite:///``: the two tables MLflow's ``log_batch`` writes (:mod:`green_mlops.mlflow.sqlite`).

Anything else (PostgreSQL, MySQL, Databricks, a store plugin, an auth plugin, request-header plugins,
``~/.mlflow/credentials``, a workspace) goes through ``MlflowClient.log_batch`` as before, and so does
every store when ``GREEN_MLOPS_MLFLOW_CLIENT=1`` is set (the way back, should a direct write ever differ).
"""
from __future__ import annotations

import base64
import functools
import json
import numbers
import os
import posixpath
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from green_mlops.mlflow.wire import Record

LOG_BATCH_PATH = "/api/2.0/mlflow/runs/log-batch"
# MLflow settings the direct REST path does not reproduce: with any of them set, MLflow's client delivers
_CLIENT_ONLY_ENV = ("MLFLOW_TRACKING_AUTH", "MLFLOW_WORKSPACE", "MLFLOW_ENABLE_DB_SDK")
_TRUE = ("true", "1", "yes", "on")
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
    if any(env.get(k) for k in _CLIENT_ONLY_ENV) or env.get("MLFLOW_TRACKING_AWS_SIGV4", "").lower() in _TRUE:
        return False
    if (Path.home() / ".mlflow" / "credentials").exists():
        return False
    from importlib.metadata import entry_points

    return not list(entry_points(group="mlflow.request_header_provider"))


class RestStore:
    """``log-batch`` over HTTP with the standard library, as MLflow's ``RestStore`` sends it."""

    def __init__(self, uri: str, timeout: float, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + LOG_BATCH_PATH, "", ""))
        self.headers = {"Content-Type": "application/json", "User-Agent": "green-mlops-delivery"}
        user, password = parts.username, parts.password  # as requests does: credentials in the URI first
        if user is None:
            user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
        if user and password:
            token = base64.standard_b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode())
            self.headers["Authorization"] = "Basic " + token.decode()
        elif env.get("MLFLOW_TRACKING_TOKEN"):
            self.headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        self.context = _tls_context(env) if parts.scheme == "https" else None
        self.timeout = timeout

    def set_timeout(self, seconds: float) -> None:
        self.timeout = seconds

    def log_metrics(self, run_id: str, records: Sequence[Record]) -> None:
        body = json.dumps({"run_id": run_id, "metrics": [
            {"key": k, "value": v, "timestamp": ts, "step": s} for k, v, ts, s in records]}).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                response.read()
        except urllib.error.HTTPError as exc:  # the server answered with an error: say what it said
            raise StoreError(_error_text(exc), exc.code) from None
        except urllib.error.URLError as exc:  # no answer: the cause itself (refused, timed out) names it best
            if isinstance(exc.reason, BaseException):
                raise exc.reason from None
            raise


def _tls_context(env: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in _TRUE:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        ctx.load_cert_chain(env["MLFLOW_TRACKING_CLIENT_CERT_PATH"])
    return ctx


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        answer = json.loads(body)
        return f"{answer.get('error_code', exc.code)}: {answer.get('message', '')}"
    except (ValueError, AttributeError):
        return f"HTTP {exc.code} {exc.reason}: {body[:300]}"


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


def open_store(uri: str, timeout: float) -> Any:
    """The cheapest store that writes ``uri`` exactly as MLflow would (MLflow's client when ``CLIENT_ENV`` is set)."""
    if os.environ.get(CLIENT_ENV, "").strip().lower() not in _TRUE:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme in ("http", "https") and rest_supported():
            return RestStore(uri, timeout)
        if scheme == "sqlite":
            from green_mlops.mlflow.sqlite import SqliteStore

            store = SqliteStore.open(uri, timeout)
            if store is not None:
                return store
    return ClientStore(uri)
