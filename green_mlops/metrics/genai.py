"""The paper's GenAI metrics (Sánchez-Mompó et al. 2025, §6.2.2, Table 6) over one LLM serving window.

Same conventions as :mod:`green_mlops.metrics.paper`: each returns a float, or None when an input is
missing, not finite, out of its domain or a denominator is zero. The metrics Table 6 shares with
Table 3 (``energy_per_sample``, ``parameters``, ``model_size_to_ram``) are the same functions.
"""
from __future__ import annotations

from green_mlops import names
from green_mlops.metrics.numbers import nonneg, number, ratio
from green_mlops.metrics.paper import energy_per_sample, model_size_to_ram, parameters

__all__ = ["GENAI_METRICS", "LEVEL_PROVENANCE", "STEADY_STATE_METRICS", "SWEEP_SERIES", "average_output_token_length", "cache_hit_rate", "energy_per_output_token",
           "energy_per_request", "flops", "genai_metrics", "request_rate"]

#: Table 6's metric names, in the paper's order, then energy per output token (its Fig. 9).
GENAI_METRICS: tuple[str, ...] = (
    "energy_per_sample", "flops", "model_size_to_ram", "parameters", "request_rate",
    "average_output_token_length", "cache_hit_rate", "energy_per_output_token",
)


def energy_per_request(energy_J: float | None, requests: float | None) -> float | None:
    """Joules per completed request. Paper: "energy_per_sample: ... the total average energy consumed
    for one LLM inference request" (Table 6 keeps the name energy_per_sample; it is the same ratio)."""
    return energy_per_sample(energy_J, requests)


def energy_per_output_token(energy_J: float | None, output_tokens: float | None) -> float | None:
    """Joules per generated token over the window (the paper's Fig. 9, "energy per output token")."""
    return energy_per_sample(energy_J, output_tokens)


def request_rate(requests: float | None, duration_s: float | None) -> float | None:
    """Requests per second. Paper: "request_rate: The number of inference RPS". Pass the offered rate
    of the load generator as ``requests`` over 1 s if that is the set-point; completed/elapsed otherwise."""
    return ratio(requests, duration_s, negative_ok=False)


def cache_hit_rate(hits: float | None, lookups: float | None) -> float | None:
    """Fraction (0–1) of cache look-ups that hit. Paper: "Fraction of queries that leverage cached tokens".
    vLLM counts prefix-cache hits in tokens: pass cached prompt tokens over prompt tokens then."""
    r = ratio(hits, lookups, negative_ok=False)
    return r if r is not None and r <= 1 else None


def average_output_token_length(output_tokens: float | None, requests: float | None) -> float | None:
    """Mean generated tokens per request. Paper: "Mean token length of the model's generated responses"."""
    return ratio(output_tokens, requests, negative_ok=False)


def flops(value: float | None) -> float | None:
    """FLOPs of the model's forward pass. Paper: "The total number of floating-point operations required
    for the model's forward pass". Passed through when a count ≥ 0, else None."""
    return nonneg(value)


def genai_metrics(*, energy_J: float | None = None, requests: float | None = None,
                  duration_s: float | None = None, output_tokens: float | None = None,
                  cache_hits: float | None = None, cache_lookups: float | None = None,
                  forward_flops: float | None = None, total_params: float | None = None,
                  model_size_bytes: float | None = None, vram_bytes: float | None = None,
                  offered_rps: float | None = None) -> dict[str, float]:
    """Every Table 6 metric the inputs allow, keyed by the paper's names (missing inputs: left out).

    ``parameters`` are all the LLM's parameters ("the full parameter count"), ``vram_bytes`` the total
    VRAM the model is spread over; ``offered_rps``, when given, is the request rate (the set-point).
    """
    values = {
        "energy_per_sample": energy_per_request(energy_J, requests),
        "flops": flops(forward_flops),
        "model_size_to_ram": model_size_to_ram(model_size_bytes, vram_bytes),
        "parameters": parameters(total_params),
        "request_rate": number(offered_rps) if number(offered_rps) is not None else request_rate(requests, duration_s),
        "average_output_token_length": average_output_token_length(output_tokens, requests),
        "cache_hit_rate": cache_hit_rate(cache_hits, cache_lookups),
        "energy_per_output_token": energy_per_output_token(energy_J, output_tokens),
    }
    return {k: v for k, v in values.items() if v is not None}


#: A rate level's steady-state figures beyond Table 6 (``levels.csv`` columns and the level run's MLflow metrics),
#: with what each means; docs/genai.md gives the formulas. Energies are on the level's ``energy_basis``.
STEADY_STATE_METRICS: dict[str, str] = {
    "duration_s": "length of the steady window W, the measure",
    "served_requests": "requests W served, each by its share of service time inside W (the estimator's n_W)",
    "served_rps": "served_requests / duration_s",
    "completed_in_window": "requests that ended inside W",
    "completion_rps": "completed_in_window / duration_s",
    "arrival_rps": "requests sent inside W / duration_s",
    names.ENERGY_PER_COMPLETED_REQUEST: "energy_J / completed_in_window (the simple estimator, a cross-check)",
    "steady_over_latency": "duration_s / latency_p50_s",
    "warmup_s": "warm-up length (sent, excluded from the measure)",
    "warmup_requests": "requests sent during the warm-up",
    "warmup_energy_J": "energy of the warm-up",
    "drain_s": "from the end of W (no more sends) to the last answer",
    "drain_completed": "requests that ended during the drain",
    "drain_energy_J": "energy of the drain",
    "loadgen_cpu_s": "CPU seconds of the load generator's process over W",
    "machine_busy_cpu_s": "busy CPU seconds of the usable CPUs over W",
    "loadgen_cpu_share": "the load generator's share of W's CPU energy (estimated)",
    "loadgen_cpu_energy_J": "loadgen_cpu_share × cpu_energy_J (estimated)",
    "server_cpu_energy_J": "cpu_energy_J − loadgen_cpu_energy_J",
    "server_energy_J": "energy_J − loadgen_cpu_energy_J",
    names.SERVER_ENERGY_PER_REQUEST: "server_energy_J / served_requests",
}
#: How a level's figures were obtained, in words: logged as ``green_mlops.genai.<name>`` tags on the level's run.
LEVEL_PROVENANCE: tuple[str, ...] = ("energy_basis", "estimator", "warmup_how", "steady_how", "loadgen_cpu_method",
                                     "tokens_source", "cache_hit_rate_method", "failures", "unsustainable_reason")
#: The per-level series on a sweep's parent run (step = level index).
SWEEP_SERIES: tuple[str, ...] = (names.RATE, names.ENERGY_PER_REQUEST, names.ENERGY_PER_OUTPUT_TOKEN,
                                 names.ENERGY_PER_SECOND, "latency_p50_s", "completion_rps", "served_rps",
                                 names.SERVER_ENERGY_PER_REQUEST, "warmup_energy_J", "drain_energy_J", "drain_s")
