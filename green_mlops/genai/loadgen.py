"""The asyncio load generator: one rate level, every request sent on its schedule, none dropped.

Requests are launched as tasks at their arrival times whether or not earlier ones have answered
(an open-loop load, as real users do not wait for each other), over one connection pool without a
size limit, so the client never queues requests the server has not seen. The level ends when its
last request has answered, failed or timed out.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from green_mlops.genai.client import RequestRecord, request_body, send
from green_mlops.genai.config import Endpoint
from green_mlops.genai.prompts import Prompt

#: Lead time before the first send, so the first request is not late by the cost of setting up the level.
LEAD_S = 0.05


@dataclass
class LevelRun:
    """One level as it ran: its window (monotonic s, first scheduled send to last answer) and its requests."""

    index: int
    rate: float
    start: float
    load_end: float
    end: float
    records: list[RequestRecord] = field(default_factory=list)


async def run_level(session: aiohttp.ClientSession, endpoint: Endpoint, model: str, prompts: Sequence[Prompt],
                    prompt_order: Sequence[int], *, index: int, rate: float, offsets: Sequence[float],
                    max_tokens: int, sampling: dict[str, float], drop: Sequence[str] = (),
                    timeout_s: float = 120.0, first_prompt: int = 0) -> LevelRun:
    """Send one request per offset (seconds from the level's start) and wait for all of them."""
    t0 = time.monotonic() + LEAD_S
    tasks: list[asyncio.Task[RequestRecord]] = []
    for i, offset in enumerate(offsets):
        due = t0 + float(offset)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        k = prompt_order[(first_prompt + i) % len(prompt_order)]
        body: dict[str, Any] = request_body(prompts[k], endpoint, model, max_tokens, sampling)
        for name in drop:
            body.pop(name, None)
        record = RequestRecord(level=index, index=i, prompt_index=k, scheduled=due, sent=due)
        tasks.append(asyncio.create_task(send(session, endpoint, body, record, timeout_s)))
    load_end = time.monotonic()
    records = list(await asyncio.gather(*tasks))
    end = max([load_end, *(r.end for r in records)])
    return LevelRun(index, rate, t0, load_end, end, records)


def new_session() -> aiohttp.ClientSession:
    """A client session whose pool has no connection limit (aiohttp's default of 100 would queue requests)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                                 timeout=aiohttp.ClientTimeout(total=None))
