"""GenOps: energy per request and per output token of a served LLM across request rates (paper §6.2).

An asyncio load generator drives any OpenAI-compatible endpoint (vLLM, TGI, ``transformers serve``,
llama.cpp) at a series of request rates; the energy meter, on this machine or on the server host,
prices each rate level per request, per output token and per second, per device.

Names load lazily, so ``green-mlops`` can define the ``genai`` options without importing the load
generator (aiohttp, pandas) for every other command.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "SweepAnalysis": "aggregate", "aggregate_sweep": "aggregate",
    "PAPER_SAMPLING": "config", "RATE_GRID": "config", "ConfigError": "config", "SweepConfig": "config",
    "parse_endpoint": "config",
    "parse_rates": "config",
    "LocalEnergy": "energy", "TraceEnergy": "energy", "TraceError": "energy",
    "EndpointError": "probe",
    "Prompt": "prompts", "PromptError": "prompts", "PromptSet": "prompts", "default_prompts_path": "prompts",
    "load_prompts": "prompts",
    "SweepRecord": "record",
    "Saturation": "saturation", "find_saturation": "saturation",
    "SweepResult": "sweep", "join_server_trace": "sweep", "run_sweep": "sweep",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'green_mlops.genai' has no attribute {name!r}")
