"""GenOps: energy per request and per output token of a served LLM across request rates (paper §6.2).

An asyncio load generator drives any OpenAI-compatible endpoint (vLLM, TGI, ``transformers serve``,
llama.cpp) at a series of request rates; the energy meter, on this machine or on the server host,
prices each rate level per request, per output token and per second, per device.
"""
from green_mlops.genai.aggregate import Analysis, analyse
from green_mlops.genai.config import PAPER_SAMPLING, ConfigError, SweepConfig, parse_endpoint, parse_rates
from green_mlops.genai.energy import LocalEnergy, TraceEnergy, TraceError
from green_mlops.genai.probe import EndpointError
from green_mlops.genai.prompts import Prompt, PromptError, PromptSet, default_prompts_path, load_prompts
from green_mlops.genai.record import SweepRecord
from green_mlops.genai.saturation import Saturation, find_saturation
from green_mlops.genai.sweep import SweepResult, join_server_trace, run_sweep

__all__ = [
    "PAPER_SAMPLING", "Analysis", "ConfigError", "EndpointError", "LocalEnergy", "Prompt", "PromptError",
    "PromptSet", "Saturation", "SweepConfig", "SweepRecord", "SweepResult", "TraceEnergy", "TraceError", "analyse",
    "default_prompts_path", "find_saturation", "join_server_trace", "load_prompts", "parse_endpoint",
    "parse_rates", "run_sweep",
]
