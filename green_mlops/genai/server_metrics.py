"""The prefix-cache hit rate, from the server's Prometheus ``/metrics`` page where it has one.

vLLM (v1 engine) counts prompt tokens looked up in and found in its prefix cache
(``vllm:prefix_cache_queries`` / ``vllm:prefix_cache_hits``): a level's hit rate is the ratio of the
two counters' increase over the level. Older vLLM and SGLang publish only a hit-rate gauge, read at
the level's end. Servers without such metrics (``transformers serve``, llama.cpp) get no number,
and the run says so rather than reporting zero.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from green_mlops.extras import require

aiohttp = require("genai", "aiohttp")
text_string_to_metric_families = require("genai", "prometheus_client.parser").text_string_to_metric_families

COUNTERS = (("vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"),
            ("vllm:gpu_prefix_cache_hits_total", "vllm:gpu_prefix_cache_queries_total"))
GAUGES = ("vllm:gpu_prefix_cache_hit_rate", "sglang:cache_hit_rate")


@dataclass(frozen=True)
class CacheSnapshot:
    """Prefix-cache readings at one moment: counters (hits, queries) and/or a hit-rate gauge."""

    hits: float | None = None
    queries: float | None = None
    counter_names: tuple[str, str] | None = None
    gauge: float | None = None
    gauge_name: str | None = None

    @property
    def empty(self) -> bool:
        return self.counter_names is None and self.gauge_name is None


def parse_cache_metrics(text: str) -> CacheSnapshot:
    """Read the prefix-cache counters or gauge from Prometheus text; summed over label sets (engines)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    for hits, queries in COUNTERS:
        if hits in totals and queries in totals:
            return CacheSnapshot(totals[hits], totals[queries], (hits, queries))
    for name in GAUGES:
        if name in totals:
            return CacheSnapshot(gauge=totals[name], gauge_name=name)
    return CacheSnapshot()


def hit_rate(before: CacheSnapshot | None, after: CacheSnapshot | None) -> tuple[float | None, str]:
    """The hit rate over the span between two snapshots, and how it was obtained (or why there is none)."""
    if after is None or after.empty:
        return None, "not exposed by the server"
    if after.counter_names and before is not None and before.counter_names == after.counter_names:
        assert after.hits is not None and after.queries is not None and before.hits is not None
        queried = after.queries - (before.queries or 0.0)
        if queried <= 0:
            return None, f"no prefix-cache lookups counted ({after.counter_names[1]} did not grow)"
        return (after.hits - before.hits) / queried, f"increase of {after.counter_names[0]} / {after.counter_names[1]}"
    if after.gauge_name:
        return after.gauge, f"gauge {after.gauge_name} at the level's end"
    return None, "counters missing at the level's start"


async def scrape(session: aiohttp.ClientSession, url: str, timeout_s: float = 5.0) -> CacheSnapshot | None:
    """Fetch and parse ``url``; None when the page is absent or unreadable (the server exposes no metrics)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                return None
            text = await resp.text()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None
    try:
        return parse_cache_metrics(text)
    except ValueError:
        return None
