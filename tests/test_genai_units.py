"""GenOps pieces that need no server: input checks, arrivals, prompt formats, saturation, cache metrics, traces."""
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from green_mlops.commands.genai import main as genai_main
from green_mlops.genai import ConfigError, PromptError, SweepConfig, find_saturation, load_prompts, parse_endpoint
from green_mlops.genai.arrivals import arrival_offsets, arrival_stream
from green_mlops.genai.config import RATE_GRID
from green_mlops.genai.energy import TraceEnergy, TraceError
from green_mlops.genai.server_metrics import CacheSnapshot, hit_rate, parse_cache_metrics
from green_mlops.meter import EnergyMeter


def test_endpoint_forms():
    for text in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/chat/completions"):
        e = parse_endpoint(text)
        assert e.url == "http://h:8000/v1/chat/completions" and e.metrics_url == "http://h:8000/metrics"
    e = parse_endpoint("https://llm.example.org/v1/completions")
    assert e.api == "completions" and e.url == "https://llm.example.org/v1/completions"
    assert parse_endpoint("http://h:1/proxy/v1", "completions").url == "http://h:1/proxy/v1/completions"


@pytest.mark.parametrize("endpoint, match", [("localhost:8000", "http"), ("ftp://h/v1", "http"), ("", "empty"),
                                             ("http://h:99999", "port")])
def test_bad_urls_are_refused(endpoint, match):
    with pytest.raises(ConfigError, match=match):
        SweepConfig(endpoint=endpoint, model="m", rates=(1,), requests=1)


@pytest.mark.parametrize("rates, match", [("0", "greater than 0"), ("1,-2", "greater than 0"), ("1,,2", "not a number"),
                                          ("fast", "not a number"), ("inf", "finite"), ((), "no request rate")])
def test_bad_rates_are_refused(rates, match):
    with pytest.raises(ConfigError, match=match):
        SweepConfig(endpoint="http://h:1", model="m", rates=rates, requests=1)


def test_other_bad_settings_are_refused():
    base = dict(endpoint="http://h:1", model="m", rates=(1,))
    for extra, match in [({"duration_s": 1, "requests": 2}, "at most one"), ({"warmup_s": -1}, "warmup must be 0"),
                         ({"steady_min_s": 0}, "shortest steady window"),
                         ({"duration_s": 0}, "more than 0"), ({"requests": 0}, "≥ 1"),
                         ({"requests": 1, "max_tokens": 0}, "max tokens"),
                         ({"requests": 1, "arrival": "burst"}, "poisson"),
                         ({"requests": 1, "timeout_s": 0}, "timeout"), ({"requests": 1, "interval_s": 0}, "interval"),
                         ({"requests": 1, "model": " "}, "model is empty")]:
        with pytest.raises(ConfigError, match=match):
            SweepConfig(**{**base, **extra})
    assert SweepConfig(**base, requests=1).rates == (1.0,)
    auto = SweepConfig(endpoint="http://h:1", model="m")  # no length given: latency rules; the shared grid
    assert auto.rates == RATE_GRID and auto.as_params()["steady_rule"].startswith("max(30 s, 3 ×")
    assert SweepConfig(**base, duration_s=40, warmup_s=0).as_params()["warmup_rule"] == "fixed 0 s"
    assert SweepConfig(**{**base, "rates": "5,1,2,2"}, duration_s=3).rates == (1.0, 2.0, 5.0)


def test_cli_refuses_bad_input_before_contacting_the_endpoint(tmp_path, capsys):
    # the endpoint is a closed port: every message below must come from validation, not from a connection attempt
    prompts = tmp_path / "empty.jsonl"
    prompts.write_text("\n\n")
    base = ["--endpoint", "http://127.0.0.1:9", "--model", "m", "--no-mlflow", "--output", str(tmp_path / "o")]
    for args, match in [(["--rps", "0"], "greater than 0"),
                        (["--rps", "1", "--prompts", str(prompts)], "holds no prompts"),
                        (["--rps", "1", "--prompts", str(tmp_path / "nope.jsonl")], "does not exist"),
                        (["--rps", "1", "--max-tokens", "0"], "argument --max-tokens: must be a whole number ≥ 1"),
                        (["--rps", "1", "--duration", "-1"], "more than 0"),
                        (["--steady-min", "0"], "argument --steady-min: must be more than 0 seconds")]:
        assert genai_main([*base, *args]) == 2
        assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert genai_main(["--server-trace", "x.parquet"]) == 2 and "--from DIR" in capsys.readouterr().err


def test_prompt_formats(tmp_path):
    f = tmp_path / "p.jsonl"
    lines = [{"prompt": "plain"}, {"question": "q?"},
             {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                           {"role": "assistant", "content": "dropped"}]},
             {"conversation_a": [{"role": "human", "content": "arena first"}, {"role": "gpt", "content": "x"},
                                 {"role": "human", "content": "second"}]},
             {"turns": ["mt-bench first", "second"]}]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    ps = load_prompts(f)
    assert [p.text for p in ps.prompts] == ["plain", "q?", "hi", "arena first", "mt-bench first"]
    assert ps.prompts[2].as_messages() == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert len(ps.sha256) == 64
    for bad, match in [("{not json", "p.jsonl:1: not valid JSON"), ('{"answer": "x"}', "no prompt found"),
                       ('{"prompt": ""}', "non-empty"), ('["a"]', "expected a JSON object"),
                       ('{"conversation": [{"role": "gpt", "content": "x"}]}', "no user message")]:
        f.write_text(bad + "\n")
        with pytest.raises(PromptError, match=match):
            load_prompts(f)


def test_shipped_prompt_set_is_varied():
    ps = load_prompts(None)
    assert 50 <= len(ps) <= 100 and len({p.text for p in ps.prompts}) == len(ps)


def test_arrivals():
    const = arrival_offsets(4, arrival="constant", requests=5)
    assert np.allclose(const, [0, 0.25, 0.5, 0.75, 1.0])
    assert len(arrival_offsets(2, arrival="constant", duration_s=3)) == 6
    p = arrival_offsets(50, duration_s=40, seed=1)
    assert p[0] == 0 and (np.diff(p) > 0).all() and p[-1] < 40
    assert len(p) == pytest.approx(2000, rel=0.1) and np.diff(p).mean() == pytest.approx(0.02, rel=0.1)
    assert np.array_equal(p, arrival_offsets(50, duration_s=40, seed=1))
    assert len(arrival_offsets(3, requests=7, seed=2)) == 7
    stream = arrival_stream(50, seed=1)
    assert np.array_equal([next(stream) for _ in range(len(p))], p)  # the same seeded Poisson process, unbounded
    assert [next(arrival_stream(4, arrival="constant")) for _ in range(1)] == [0.0]


def _levels(rates, energy, latency, sustainable=None):
    return pd.DataFrame({"rate_rps": rates, "energy_per_request_J": energy, "latency_p50_s": latency,
                         "sustainable": sustainable or [True] * len(rates),
                         "unsustainable_reason": [""] * len(rates)})


def test_saturation_rules():
    falling = _levels([1, 2, 5, 10], [100, 60, 30, 20], [1.0, 1.0, 1.1, 1.2])
    assert find_saturation(falling).rate_rps is None and find_saturation(falling).criterion == "not reached"
    flat = _levels([1, 2, 5, 10, 20], [100, 60, 30, 29, 31], [1, 1, 1, 1, 1])
    s = find_saturation(flat)
    assert s.rate_rps == 5 and s.criterion == "energy per request stopped falling" and "10 rps" in s.detail
    slow = _levels([1, 2, 5, 10], [100, 60, 30, 15], [1.0, 1.0, 1.2, 1.8])
    assert find_saturation(slow).rate_rps == 5 and find_saturation(slow).criterion == "latency climbed"
    lost = _levels([1, 2, 5], [100, 60, 30], [1, 1, 1], [True, True, False])
    assert find_saturation(lost).rate_rps == 2 and find_saturation(lost).criterion == "next rate not sustained"
    first = _levels([1, 2], [10, 5], [1, 1], [False, True])
    assert find_saturation(first).rate_rps is None and "below the lowest" in find_saturation(first).criterion
    unmetered = _levels([1, 2, 5], [math.nan] * 3, [1.0, 1.0, 2.0])
    assert find_saturation(unmetered).criterion == "latency climbed"
    assert find_saturation(_levels([3], [1], [1])).criterion == "one level only"


VLLM_METRICS = """# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="meta-llama/Llama-3.2-1B-Instruct"} %s
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="meta-llama/Llama-3.2-1B-Instruct"} %s
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.2-1B-Instruct"} 3.0
"""


def test_prefix_cache_hit_rate_from_vllm_counters():
    before = parse_cache_metrics(VLLM_METRICS % ("1000.0", "200.0"))
    after = parse_cache_metrics(VLLM_METRICS % ("3000.0", "1400.0"))
    rate, how = hit_rate(before, after)
    assert rate == pytest.approx(0.6) and "vllm:prefix_cache_hits_total" in how
    assert hit_rate(after, after)[0] is None
    gauge = parse_cache_metrics("# TYPE vllm:gpu_prefix_cache_hit_rate gauge\nvllm:gpu_prefix_cache_hit_rate 0.25\n")
    assert hit_rate(None, gauge) == (0.25, "gauge vllm:gpu_prefix_cache_hit_rate at the level's end")
    assert parse_cache_metrics("# TYPE x counter\nx_total 1\n").empty
    assert hit_rate(None, None) == (None, "not exposed by the server") and hit_rate(None, CacheSnapshot())[0] is None


def test_trace_file_from_the_meter_is_joined_by_time(tmp_path):
    meter = EnergyMeter(interval=0.05)
    meter.measure_idle(0.3)
    with meter:
        time.sleep(0.6)
    for suffix in (".csv", ".parquet"):
        path = meter.export_trace(tmp_path / f"t{suffix}")
        off = meter.trace.wall_offset
        idle = (meter.idle.start + off, meter.idle.end + off)
        trace = TraceEnergy(path, idle=idle)
        span = trace.span(meter.start_time + off, meter.end_time + off, "run")
        local = meter.result()
        assert span.total_J == pytest.approx(local.total_J, rel=0.02)
        assert span.net_J == pytest.approx(local.net_J, rel=0.05, abs=0.05 * local.total_J)
        assert {s.info.provenance for s in span.sources} <= {"measured", "estimated"}
        assert [s.info.method for s in span.sources] == [s.info.method for s in local.sources]
        with pytest.raises(TraceError, match="sleep N"):
            trace.span(meter.end_time + off, meter.end_time + off + 60, "after")
        late = TraceEnergy(path, clock_offset_s=3600.0)
        with pytest.raises(TraceError, match="clock-offset"):
            late.span(meter.start_time + off, meter.end_time + off, "run")
    with pytest.raises(TraceError, match="does not exist"):
        TraceEnergy(tmp_path / "missing.parquet")
