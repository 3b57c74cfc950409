"""The asyncio load generator: one rate level in three phases, every request sent on its schedule, none dropped.

Requests are launched as tasks at their arrival times whether or not earlier ones have answered
(an open-loop load, as real users do not wait for each other), over one connection pool without a
size limit, so the client never queues requests the server has not seen. Arrivals run through a
warm-up (sent, excluded from the measure) and a steady window (the measure); then no more are
sent, and the drain lasts until the last request has answered, failed or timed out.
"""
from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from green_mlops.extras import require
from green_mlops.genai.client import RequestRecord, request_body, send
from green_mlops.genai.config import STEADY_LATENCY_FACTOR, WARMUP_LATENCY_FACTOR, WARMUP_MIN_S, Endpoint
from green_mlops.genai.cpu_share import CpuClock, cpu_clock
from green_mlops.genai.prompts import Prompt

aiohttp = require("genai", "aiohttp")

#: Lead time before the first send, so the first request is not late by the cost of setting up the level.
LEAD_S = 0.05
#: How often an automatic warm-up looks at the latencies answered so far.
POLL_S = 0.1


@dataclass(frozen=True)
class PhasePlan:
    """How long a level's phases last: fixed seconds, or None for the latency rules of :mod:`.config`."""

    warmup_s: float | None
    steady_s: float | None
    steady_min_s: float
    warmup_max_s: float
    warmup_min_s: float = WARMUP_MIN_S

    def warmup_over(self, elapsed: float, latencies: Sequence[float]) -> str | None:
        """Why an automatic warm-up ends now (None: it goes on)."""
        if elapsed >= self.warmup_max_s:
            return f"auto: reached its limit {self.warmup_max_s:g} s ({len(latencies)} answered)"
        if elapsed < self.warmup_min_s or not latencies:
            return None
        median = statistics.median(latencies)
        if elapsed >= WARMUP_LATENCY_FACTOR * median:
            return (f"auto: {elapsed:.2f} s ≥ max({self.warmup_min_s:g} s, {WARMUP_LATENCY_FACTOR:g} × median latency "
                    f"{median:.4f} s of {len(latencies)} answered)")
        return None

    def steady_length(self, latencies: Sequence[float]) -> tuple[float, str]:
        """The steady window's length (s) and why, given the latencies answered during the warm-up."""
        if self.steady_s is not None:
            return self.steady_s, f"fixed {self.steady_s:g} s"
        if not latencies:
            return self.steady_min_s, f"auto: {self.steady_min_s:g} s minimum (no warm-up latency known)"
        median = statistics.median(latencies)
        length = max(self.steady_min_s, STEADY_LATENCY_FACTOR * median)
        return length, (f"auto: max({self.steady_min_s:g} s, {STEADY_LATENCY_FACTOR:g} × warm-up median latency "
                        f"{median:.4f} s)")


@dataclass
class LevelRun:
    """One level as it ran (monotonic s): first scheduled send, steady window, last answer; CPU clocks at the edges."""

    index: int
    rate: float
    start: float
    steady_start: float
    load_end: float
    end: float
    warmup_how: str
    steady_how: str
    records: list[RequestRecord] = field(default_factory=list)
    cpu: dict[str, CpuClock] = field(default_factory=dict)


async def run_level(session: aiohttp.ClientSession, endpoint: Endpoint, model: str, prompts: Sequence[Prompt],
                    prompt_order: Sequence[int], *, index: int, rate: float, arrivals: Iterator[float],
                    plan: PhasePlan, max_tokens: int, sampling: dict[str, float], drop: Sequence[str] = (),
                    timeout_s: float = 120.0, first_prompt: int = 0) -> LevelRun:
    """Send requests at ``arrivals`` (seconds from the level's start) through warm-up and steady window; drain."""
    t0 = time.monotonic() + LEAD_S
    cpu = {"start": cpu_clock()}
    tasks: list[asyncio.Task[RequestRecord]] = []
    answered: list[float] = []  # latencies of answered warm-up requests, as they come in
    w0 = t0 + plan.warmup_s if plan.warmup_s is not None else None
    warmup_how = f"fixed {plan.warmup_s:g} s" if plan.warmup_s is not None else ""
    w1, steady_how = math.inf, ""
    due = t0 + next(arrivals)
    while True:
        now = time.monotonic()
        if plan.warmup_s is None and not warmup_how:
            why = plan.warmup_over(now - t0, answered)
            if why:
                w0, warmup_how = now, why
        if w0 is not None and now >= w0 and not steady_how:
            length, steady_how = plan.steady_length(list(answered))
            w1 = w0 + length
            cpu["steady_start"] = cpu_clock()
        if now >= w1:
            break
        if now >= due and due < w1:
            warm = w0 is None or due < w0
            tasks.append(_launch(session, endpoint, model, prompts, prompt_order, index, len(tasks),
                                 first_prompt, due, "warmup" if warm else "steady", max_tokens, sampling, drop,
                                 timeout_s, answered if warm else None))
            due = t0 + next(arrivals)
            continue
        wake = min(due, w1, w0 if w0 is not None and not steady_how else math.inf)
        if w0 is None:
            wake = min(wake, now + POLL_S)
        await asyncio.sleep(max(wake - now, 0.0))
    cpu["steady_end"] = cpu_clock()
    records = list(await asyncio.gather(*tasks))
    cpu["end"] = cpu_clock()
    assert w0 is not None
    end = max([w1, *(r.end for r in records)])
    return LevelRun(index, rate, t0, w0, w1, end, warmup_how, steady_how, records, cpu)


def _launch(session: aiohttp.ClientSession, endpoint: Endpoint, model: str, prompts: Sequence[Prompt],
            prompt_order: Sequence[int], level: int, i: int, first_prompt: int, due: float, phase: str,
            max_tokens: int, sampling: dict[str, float], drop: Sequence[str], timeout_s: float,
            answered: list[float] | None) -> asyncio.Task[RequestRecord]:
    k = prompt_order[(first_prompt + i) % len(prompt_order)]
    body: dict[str, Any] = request_body(prompts[k], endpoint, model, max_tokens, sampling)
    for name in drop:
        body.pop(name, None)
    record = RequestRecord(level=level, index=i, prompt_index=k, scheduled=due, sent=due, phase=phase)
    task = asyncio.create_task(send(session, endpoint, body, record, timeout_s))
    if answered is not None:
        task.add_done_callback(lambda t: _note_latency(t, answered))
    return task


def _note_latency(task: asyncio.Task[RequestRecord], answered: list[float]) -> None:
    if not task.cancelled() and task.exception() is None and task.result().ok:
        answered.append(task.result().latency_s)


def new_session() -> aiohttp.ClientSession:
    """A client session whose pool has no connection limit (aiohttp's default of 100 would queue requests)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                                 timeout=aiohttp.ClientTimeout(total=None))
