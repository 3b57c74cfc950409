"""One request before any load: is the endpoint there, does it know the model, which fields does it refuse?

The probe also warms the server (the first request often loads or compiles something), so that cost
is not charged to the first rate level. Fields outside the OpenAI schema that the paper's sampling
needs (``top_k``, ``min_p``) or that ask for token counts (``stream_options``) are dropped when the
server refuses them, and the run records which: with temperature 0 they do not change the output.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from green_mlops.extras import require
from green_mlops.genai.client import RequestRecord, request_body, send
from green_mlops.genai.config import OPTIONAL_FIELDS, Endpoint
from green_mlops.genai.prompts import Prompt

aiohttp = require("genai", "aiohttp")

PROBE_MAX_TOKENS = 4


class EndpointError(RuntimeError):
    """The endpoint cannot serve the sweep; the message says what it answered and what to check."""


@dataclass
class ProbeResult:
    """What the probe learnt: fields to leave out of every request, and how tokens are counted."""

    dropped: list[str] = field(default_factory=list)
    tokens_source: str = ""
    latency_s: float = float("nan")


async def probe(session: aiohttp.ClientSession, endpoint: Endpoint, model: str, prompt: Prompt,
                sampling: dict[str, float], timeout_s: float) -> ProbeResult:
    """Send one short request; drop refused optional fields; raise EndpointError when nothing works."""
    result = ProbeResult()
    for _ in range(len(OPTIONAL_FIELDS) + 1):
        body = request_body(prompt, endpoint, model, PROBE_MAX_TOKENS, sampling)
        for name in result.dropped:
            body.pop(name, None)
        record = await send(session, endpoint, body, RequestRecord(-1, 0, 0, 0.0, 0.0), timeout_s)
        if record.ok:
            result.tokens_source = record.tokens_source
            result.latency_s = record.latency_s
            return result
        refused = _refused_fields(record, body)
        if not refused:
            raise EndpointError(_explain(record, endpoint, model))
        result.dropped.extend(refused)
    raise EndpointError(_explain(record, endpoint, model))


def _refused_fields(record: RequestRecord, body: dict[str, Any]) -> list[str]:
    if record.error_kind != "http" or record.status not in (400, 422):
        return []
    return [name for name in OPTIONAL_FIELDS if name in body and name in record.error]


def _explain(record: RequestRecord, endpoint: Endpoint, model: str) -> str:
    if record.error_kind == "connect":
        return (f"{record.error}. Is the server running and listening there? Start it first "
                f"(e.g. `transformers serve MODEL --port PORT` or `vllm serve MODEL`), or fix --endpoint.")
    if record.error_kind == "timeout":
        return (f"the endpoint {endpoint.url} did not answer a {PROBE_MAX_TOKENS}-token request: {record.error}. "
                "Is the model still loading? Raise --timeout or wait until the server is ready.")
    if record.status == 404:
        return (f"{endpoint.url} answered 404: no OpenAI-compatible {endpoint.api} API there, or no model "
                f"{model!r}. Give the server's base URL (e.g. http://host:8000 or http://host:8000/v1) "
                "and the model name it serves (GET /v1/models lists them).")
    detail = record.error
    try:
        detail = json.dumps(json.loads(record.error.split(": ", 1)[1]))
    except (IndexError, ValueError):
        pass
    return (f"{endpoint.url} refused a request for model {model!r}: {detail}. "
            "Check --model (the name the server serves) and --api (chat or completions).")
