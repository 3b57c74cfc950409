"""One streamed request to an OpenAI-compatible endpoint, timed: latency, time to first token, tokens.

Output tokens come from the server's ``usage`` when it sends one (vLLM does with
``stream_options.include_usage``; ``transformers serve`` always does), else from counting the
stream's content chunks, and each record says which. A failure (refused, timed out, HTTP error,
an error inside the stream) is a record too, with its kind: the load generator never drops one.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from green_mlops.extras import require
from green_mlops.genai.config import Endpoint
from green_mlops.genai.prompts import Prompt

aiohttp = require("genai", "aiohttp")


@dataclass
class RequestRecord:
    """What happened to one request; times are ``time.monotonic()`` seconds."""

    level: int
    index: int
    prompt_index: int
    scheduled: float
    sent: float
    phase: str = ""
    end: float = float("nan")
    first_token: float = float("nan")
    ok: bool = False
    status: int | None = None
    error_kind: str = ""
    error: str = ""
    output_tokens: int = 0
    prompt_tokens: int | None = None
    tokens_source: str = ""
    stream_chunks: int = 0
    finish_reason: str = ""

    @property
    def latency_s(self) -> float:
        return self.end - self.sent

    @property
    def ttft_s(self) -> float:
        return self.first_token - self.sent

    def as_row(self, wall_offset: float) -> dict[str, Any]:
        """A flat row with wall-clock times (epoch seconds), for CSV and joining a server trace."""
        row = asdict(self)
        for key in ("scheduled", "sent", "end", "first_token"):
            row[key] = row[key] + wall_offset
        row["latency_s"] = self.latency_s
        row["ttft_s"] = self.ttft_s
        row["send_lag_s"] = self.sent - self.scheduled
        return row


def request_body(prompt: Prompt, endpoint: Endpoint, model: str, max_tokens: int,
                 sampling: dict[str, float]) -> dict[str, Any]:
    """The JSON body of one streamed request with the run's sampling settings."""
    body: dict[str, Any] = {"model": model, "stream": True, "max_tokens": max_tokens}
    if endpoint.api == "chat":
        body["messages"] = prompt.as_messages()
    else:
        body["prompt"] = prompt.text
    body.update(sampling)
    body["stream_options"] = {"include_usage": True}
    return body


async def send(session: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any], record: RequestRecord,
               timeout_s: float) -> RequestRecord:
    """Send ``body``, read the SSE stream to its end, and fill ``record``; never raises for network faults."""
    record.sent = time.monotonic()
    try:
        async with session.post(endpoint.url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            record.status = resp.status
            if resp.status != 200:
                text = (await resp.text())[:500]
                return _fail(record, "http", f"HTTP {resp.status}: {text.strip()}")
            await _read_stream(resp, record, endpoint.api)
    except asyncio.TimeoutError:
        return _fail(record, "timeout", f"no complete answer within {timeout_s:g} s")
    except aiohttp.ClientConnectorError as exc:
        return _fail(record, "connect", f"cannot connect to {endpoint.url}: {exc.os_error or exc}")
    except (aiohttp.ClientError, ConnectionError) as exc:
        return _fail(record, "connection", f"{type(exc).__name__}: {exc}")
    except _StreamError as exc:
        return _fail(record, "stream", str(exc))
    record.end = time.monotonic()
    record.ok = True
    return record


class _StreamError(RuntimeError):
    pass


def _fail(record: RequestRecord, kind: str, message: str) -> RequestRecord:
    record.end = time.monotonic()
    record.ok = False
    record.error_kind = kind
    record.error = message
    record.tokens_source = record.tokens_source or "stream-chunks"
    return record


async def _read_stream(resp: aiohttp.ClientResponse, record: RequestRecord, api: str) -> None:
    usage: dict[str, Any] | None = None
    events = 0
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                continue
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                raise _StreamError(f"unreadable stream event: {data[:200]!r}") from None
            if not isinstance(event, dict):
                continue
            events += 1
            if event.get("error"):
                raise _StreamError(f"server error in stream: {str(event['error'])[:300]}")
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                if _has_output(choice, api):
                    record.stream_chunks += 1
                    record.output_tokens = record.stream_chunks
                    if math.isnan(record.first_token):
                        record.first_token = time.monotonic()
                if choice.get("finish_reason"):
                    record.finish_reason = str(choice["finish_reason"])
    if events == 0:
        raise _StreamError("the answer held no server-sent events: does this endpoint stream (\"stream\": true)?")
    if usage and isinstance(usage.get("completion_tokens"), int):
        record.output_tokens = usage["completion_tokens"]
        record.prompt_tokens = usage.get("prompt_tokens")
        record.tokens_source = "usage"
    else:
        record.tokens_source = "stream-chunks"


def _has_output(choice: dict[str, Any], api: str) -> bool:
    if api == "completions":
        return bool(choice.get("text"))
    delta = choice.get("delta") or {}
    return bool(delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                or delta.get("tool_calls"))
