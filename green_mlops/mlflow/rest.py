"""MLflow's REST ``log-batch`` over HTTP with the standard library, as MLflow's ``RestStore`` sends it.

The same request (``POST /api/2.0/mlflow/runs/log-batch``, JSON with the run id and up to 1000 metrics),
with the MLflow settings that shape it: credentials in the URI first (as ``requests`` reads them), else
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (basic), else ``MLFLOW_TRACKING_TOKEN`` (bearer);
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` and ``MLFLOW_TRACKING_CLIENT_CERT_PATH``
for TLS. Settings it does not reproduce send delivery through MLflow's client instead
(:func:`green_mlops.mlflow.stores.rest_supported`).
"""
from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from green_mlops.mlflow.stores import TRUE, StoreError
from green_mlops.mlflow.wire import Record

LOG_BATCH_PATH = "/api/2.0/mlflow/runs/log-batch"


class RestStore:
    """Sends one run's metrics to an ``mlflow server`` (see the module docstring)."""

    def __init__(self, uri: str, timeout: float, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + LOG_BATCH_PATH, "", ""))
        self.headers = {"Content-Type": "application/json", "User-Agent": "green-mlops-delivery"}
        basic = None
        if parts.username is not None or parts.password is not None:  # as requests does: the URI's credentials win
            basic = (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))
        elif env.get("MLFLOW_TRACKING_USERNAME") and env.get("MLFLOW_TRACKING_PASSWORD"):
            basic = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
        if basic is not None:
            self.headers["Authorization"] = "Basic " + base64.standard_b64encode(":".join(basic).encode()).decode()
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
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in TRUE:
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
