"""GenOps sweeps against a real ``transformers serve`` on 127.0.0.1: a tiny random Llama, built here.

The server, the model, the meter (this machine's estimating models), MLflow (SQLite) and the trace
join are all real; nothing is downloaded. One sweep of two rate levels is checked number by number.
"""
import json
import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from green_mlops.commands.genai import main as genai_main
from green_mlops.genai import SweepConfig, join_server_trace, load_prompts, run_sweep
from green_mlops.genai.model_info import accelerator_memory_bytes
from green_mlops.genai.random_llama import build_random_llama
from green_mlops.genai.transformers_server import TransformersServer, free_port

RATES = (2.0, 4.0)
REQUESTS = 6  # steady window of REQUESTS / rate s; constant arrivals put exactly 6 sends in it
WARMUP_S = 0.6  # 2 (at 2 rps) or 3 (at 4 rps) sends before the window, none on a window edge
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("genai")
    built = build_random_llama(root / "tiny-llama", "tiny")
    with TransformersServer(built.path, extra_args=("--cb-num-blocks", "64", "--cb-block-size", "32"),
                            log_path=root / "serve.log", start_timeout_s=120) as s:
        s.built = built
        yield s


@pytest.fixture(scope="module")
def sweep(server, tmp_path_factory):
    """One sweep through the CLI entry point: two levels, local meter, MLflow in SQLite."""
    root = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    out = root / "out"
    code = genai_main(["--endpoint", server.url, "--model", server.model, "--rps", ",".join(f"{r:g}" for r in RATES),
                       "--requests", str(REQUESTS), "--warmup", f"{WARMUP_S:g}", "--max-tokens", str(MAX_TOKENS),
                       "--arrival", "constant",
                       "--idle-seconds", "1", "--cooldown", "0.2", "--output", str(out), "--tracking-uri", uri,
                       "--experiment", "genai-test"])
    mlflow.set_tracking_uri(None)
    assert code == 0
    return out, uri


def _close(a, b, rel=1e-9, abs_=1e-9):
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)


def test_every_level_number_exists_and_adds_up(sweep, server):
    out, _ = sweep
    levels = pd.read_csv(out / "levels.csv")
    requests = pd.read_csv(out / "requests.csv")
    devices = pd.read_csv(out / "devices.csv")
    assert levels["rate_rps"].tolist() == list(RATES)
    for _, lv in levels.iterrows():
        mine = requests[requests["level"] == lv["level"]]
        steady, warm = mine[mine["phase"] == "steady"], mine[mine["phase"] == "warmup"]
        assert lv["requests"] == len(steady) == REQUESTS and len(mine) == len(steady) + len(warm)
        assert lv["ok"] + lv["failed"] == lv["requests"] and lv["ok"] == REQUESTS
        assert mine["ok"].all() and (mine["status"] == 200).all()
        # phases: the warm-up's sends come before the window and are not counted in it; the window is as long as
        # asked; sending stops at its end and the drain lasts until the last answer
        assert lv["warmup_s"] == pytest.approx(WARMUP_S) and lv["warmup_how"] == f"fixed {WARMUP_S:g} s"
        assert lv["warmup_requests"] == len(warm) == int(WARMUP_S * lv["rate_rps"]) + 1
        assert (warm["scheduled"] < lv["steady_start"]).all() and (steady["scheduled"] >= lv["steady_start"]).all()
        assert lv["duration_s"] == pytest.approx(REQUESTS / lv["rate_rps"])
        assert _close(lv["steady_end"] - lv["steady_start"], lv["duration_s"])
        assert (mine["scheduled"] < lv["steady_end"]).all() and lv["steady_how"] == f"fixed {REQUESTS / lv['rate_rps']:g} s"
        assert _close(lv["drain_s"], lv["end"] - lv["steady_end"]) and lv["drain_s"] >= 0
        assert lv["drain_completed"] == (mine["end"] >= lv["steady_end"]).sum()
        assert lv["completed_in_window"] + lv["drain_completed"] + (mine["end"] < lv["steady_start"]).sum() == len(mine)
        # tokens: from the server's usage, every request ran to max_tokens (random weights never say EOS here)
        assert (mine["tokens_source"] == "usage").all() and lv["tokens_source"] == "usage"
        assert (mine["output_tokens"] == MAX_TOKENS).all() and lv["average_output_token_length"] == MAX_TOKENS
        assert lv["output_tokens"] == pytest.approx(lv["served_requests"] * MAX_TOKENS)
        assert 0 < lv["served_requests"] <= len(mine)
        assert (mine["stream_chunks"] >= 1).all() and (mine["prompt_tokens"] > 0).all()
        # times: sent ≤ first token ≤ end, inside the level; percentiles ordered
        assert (mine["sent"] <= mine["first_token"]).all() and (mine["first_token"] <= mine["end"]).all()
        assert mine["sent"].min() >= lv["start"] - 1e-6 and _close(mine["end"].max(), lv["end"], abs_=1e-6)
        assert 0 < lv["ttft_p50_s"] <= lv["latency_p50_s"] <= lv["latency_p90_s"] <= lv["latency_p99_s"]
        assert lv["latency_p50_s"] == pytest.approx(steady["latency_s"].median())  # over the window's requests
        assert lv["arrival_rps"] == pytest.approx(lv["rate_rps"])
        assert lv["sustainable"] in (True, False) and lv["served_rps"] > 0
        # energy: net of the idle baseline, split per domain, and every ratio consistent with the total
        assert lv["energy_basis"] == "net of idle" and lv["gross_energy_J"] > 0 and lv["idle_power_W"] > 0
        assert _close(lv["energy_J"], lv["gross_energy_J"] - lv["idle_power_W"] * lv["duration_s"], 1e-6, 1e-6)
        parts = [lv[f"{d}_energy_J"] for d in ("gpu", "cpu", "dram") if not math.isnan(lv[f"{d}_energy_J"])]
        assert _close(sum(parts), lv["energy_J"], 1e-9, 1e-6)
        assert _close(lv["served_requests"] * lv["energy_per_request_J"], lv["energy_J"])
        assert _close(lv["served_requests"] * lv["energy_per_ok_request_J"], lv["energy_J"])  # all answered
        assert _close(lv["output_tokens"] * lv["energy_per_output_token_J"], lv["energy_J"])
        assert _close(lv["duration_s"] * lv["energy_per_s_W"], lv["energy_J"])
        assert _close(lv["served_rps"] * lv["energy_per_request_J"], lv["energy_per_s_W"])
        assert not math.isnan(lv["warmup_energy_J"]) and not math.isnan(lv["drain_energy_J"])
        # the load generator shares this machine: its CPU share is estimated and split off the server's
        assert lv["loadgen_cpu_s"] > 0 and lv["machine_busy_cpu_s"] >= lv["loadgen_cpu_s"] * 0.5
        if math.isnan(lv["loadgen_cpu_share"]):  # this shared test machine's CPUs can be as busy as at idle
            assert "no busier than at idle" in lv["loadgen_cpu_method"] and math.isnan(lv["server_energy_J"])
        else:
            assert 0 <= lv["loadgen_cpu_share"] <= 1 and lv["loadgen_cpu_method"].startswith("estimated: cpu-time share")
            assert _close(lv["server_cpu_energy_J"] + lv["loadgen_cpu_energy_J"], lv["cpu_energy_J"], 1e-9, 1e-9)
            assert _close(lv["server_energy_per_request_J"] * lv["served_requests"], lv["server_energy_J"])
        assert lv["loadgen_cpu_method"].startswith("estimated: ")
        mine_dev = devices[devices["level"] == lv["level"]]
        assert _close(mine_dev["energy_J"].sum(), lv["energy_J"], 1e-9, 1e-6)
        assert _close(mine_dev["gross_energy_J"].sum(), lv["gross_energy_J"], 1e-9, 1e-6)
        assert set(mine_dev["provenance"]) <= {"measured", "estimated"} and mine_dev["method"].str.len().min() > 0
        # the model's size, read from the served folder's safetensors (float32: 4 bytes a parameter)
        assert lv["parameters"] == server.built.parameters and lv["flops"] == 2 * server.built.parameters
        memory, _ = accelerator_memory_bytes()  # the host's RAM here: no GPU
        assert lv["model_size_to_ram"] == pytest.approx(4 * server.built.parameters / memory)
        # transformers serve has no Prometheus page: no hit rate, and the table says why
        assert math.isnan(lv["cache_hit_rate"]) and lv["cache_hit_rate_method"] == "not exposed by the server"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["saturation"]["criterion"] and summary["idle"]["duration_s"] >= 1
    assert "top_k" in summary["params"]["dropped_fields"]  # transformers serve refuses vLLM's sampling extras
    for name in ("energy_per_request.png", "energy_per_token.png", "device_energy_per_request.png", "latency.png",
                 "trace.parquet", "sweep.json"):
        assert (out / name).stat().st_size > 0


def test_sweep_is_logged_to_mlflow(sweep):
    out, uri = sweep
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("genai-test")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) == len(RATES)
    parent = parents[0]
    assert parent.data.params["rates_rps"] == "2,4" and parent.data.params["sampling.temperature"] == "0"
    assert parent.data.tags["green_mlops.genai.energy_source"].startswith("local meter")
    assert parent.data.tags["green_mlops.method.cpu"] and parent.data.tags["green_mlops.provenance.cpu"]
    assert parent.data.tags["green_mlops.genai.estimator"].startswith("service-overlap share")
    assert parent.data.params["warmup_rule"] == "fixed 0.6 s" and parent.data.params["loadgen_same_machine"] == "true"
    levels = pd.read_csv(out / "levels.csv").set_index("rate_rps")
    for child in children:
        m = child.data.metrics
        rate = float(child.data.params["rate_rps"])
        for key in ("energy_J", "energy_per_request_J", "energy_per_output_token_J", "energy_per_s_W",
                    "latency_p50_s", "ttft_p50_s", "output_tokens", "requests", "failed", "cpu_energy_J",
                    "served_requests", "warmup_energy_J", "drain_energy_J", "drain_s", "drain_completed",
                    "loadgen_cpu_s", "machine_busy_cpu_s"):
            assert m[key] == pytest.approx(levels.loc[rate, key], rel=1e-9, abs=1e-9), key
        for key in ("loadgen_cpu_energy_J", "server_energy_per_request_J"):  # NaN (left out) on a saturated machine
            assert m.get(key, math.nan) == pytest.approx(levels.loc[rate, key], rel=1e-9, abs=1e-9, nan_ok=True), key
        tags = child.data.tags
        assert tags["green_mlops.genai.estimator"].startswith("service-overlap share")
        assert tags["green_mlops.genai.warmup_how"] == "fixed 0.6 s" and tags["green_mlops.genai.steady_how"]
        assert tags["green_mlops.genai.loadgen_cpu_method"].startswith("estimated")
        assert m["energy_per_sample"] == m["energy_per_request_J"] and m["request_rate"] == rate
        assert m["average_output_token_length"] == MAX_TOKENS and "cache_hit_rate" not in m
        assert m["energy_per_output_token"] == m["energy_per_output_token_J"] and m["parameters"] > 0
    for series in ("energy_per_request_J", "drain_energy_J", "served_rps"):
        assert sorted(h.step for h in client.get_metric_history(parent.info.run_id, series)) == [0, 1], series
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "genai")}
    for name in ("levels.csv", "requests.csv", "devices.csv", "energy_per_request.png", "energy_per_token.png",
                 "device_energy_per_request.png", "summary.json", "trace.parquet"):
        assert f"genai/{name}" in artifacts


def test_server_trace_joined_by_time_matches_the_local_meter(sweep, tmp_path):
    out, _ = sweep
    joined = join_server_trace(out, out / "trace.parquet", output=tmp_path / "joined", experiment=None)
    local = pd.read_csv(out / "levels.csv").set_index("level")
    remote = joined.analysis.levels.set_index("level")
    assert joined.energy_description.startswith("server trace trace.parquet")
    for level in local.index:
        # the trace is interpolated between 0.1 s ticks: agreement within a few percent of a level's energy
        assert remote.loc[level, "gross_energy_J"] == pytest.approx(local.loc[level, "gross_energy_J"], rel=0.03)
        assert remote.loc[level, "idle_power_W"] == pytest.approx(local.loc[level, "idle_power_W"], rel=0.03)
        assert remote.loc[level, "requests"] == local.loc[level, "requests"]


def test_failed_requests_keep_their_energy(server, tmp_path):
    """Refused, timed-out and error-answered requests are counted per level, and the level's energy divides by all."""
    prompts = load_prompts(None)
    cases = [("refused", f"http://127.0.0.1:{free_port()}", server.model, dict(max_tokens=4), "connect"),
             ("timeout", server.url, server.model, dict(max_tokens=900, timeout_s=0.05), "timeout"),
             ("http error", server.url, "no-such-model", dict(max_tokens=4), "http")]
    for name, endpoint, model, extra, kind in cases:
        # no probe (it would refuse these endpoints up front), so send only fields transformers serve accepts
        config = SweepConfig(endpoint=endpoint, model=model, rates=(5.0,), requests=3, arrival="constant", warmup_s=0,
                             idle_s=0, cooldown_s=0, probe=False, sampling={"temperature": 0.0, "top_p": 1.0},
                             **{"timeout_s": 30.0, **extra})
        result = run_sweep(config, prompts, output=tmp_path / name.replace(" ", "_"), experiment=None,
                           log=lambda _m: None)
        lv = result.analysis.levels.iloc[0]
        assert lv["requests"] == 3 and lv["failed"] == 3 and lv["ok"] == 0, name
        assert lv["failures"] == f"{kind}: 3", name
        assert lv["energy_basis"] == "gross (no idle baseline)" and lv["energy_J"] > 0, name
        assert lv["energy_per_request_J"] == pytest.approx(lv["energy_J"] / 3), name
        assert math.isnan(lv["energy_per_ok_request_J"]) and not lv["sustainable"], name
        assert "3 of 3 requests failed" in lv["unsustainable_reason"], name
        assert result.analysis.saturation.criterion == "saturated below the lowest rate", name
        assert result.record.requests["error"].str.len().min() > 0, name


def test_cli_refuses_an_unreachable_endpoint_before_any_load(tmp_path, capsys):
    out = tmp_path / "never"
    code = genai_main(["--endpoint", f"http://127.0.0.1:{free_port()}", "--model", "m", "--rps", "1",
                       "--requests", "1", "--idle-seconds", "0", "--output", str(out), "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot connect" in err and "Is the server running" in err
    assert not (out / "requests.csv").exists()


def test_cli_refuses_a_model_the_server_does_not_serve(server, tmp_path, capsys):
    code = genai_main(["--endpoint", server.url + "/v1", "--model", "other-model", "--rps", "1", "--requests", "1",
                       "--idle-seconds", "0", "--output", str(tmp_path / "o"), "--no-mlflow"])
    err = capsys.readouterr().err
    assert code == 2 and "other-model" in err and "Check --model" in err


def test_prompt_file_in_arena_format_drives_the_server(server, tmp_path):
    arena = tmp_path / "arena.jsonl"
    rows = [{"conversation_a": [{"role": "user", "content": q}, {"role": "assistant", "content": "..."}]}
            for q in ("What is the difference between OpenCL and CUDA?", "Fuji vs. Nikon, which is better?")]
    arena.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    config = SweepConfig(endpoint=server.url, model=server.model, rates=(10.0,), requests=2, max_tokens=3,
                         idle_s=0, cooldown_s=0, api="completions", warmup_s=0, arrival="constant")
    result = run_sweep(config, load_prompts(arena), output=tmp_path / "o", meter=False, experiment=None,
                       log=lambda _m: None)
    lv = result.analysis.levels.iloc[0]
    assert lv["ok"] == 2 and result.record.requests["output_tokens"].sum() == 6 and lv["energy_basis"] == "not metered"
    assert Path(result.record.params["prompts"]) == arena


def test_interrupted_sweep_keeps_the_levels_it_finished(server, tmp_path):
    """Ctrl-C (SIGINT) during the second level: exit 130, the first level analysed and written."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "o"
    child = subprocess.Popen([sys.executable, "-m", "green_mlops.commands.genai", "--endpoint", server.url, "--model",
                              server.model, "--rps", "4,8", "--warmup", "0.5", "--duration", "3", "--max-tokens", "4",
                              "--idle-seconds",
                              "0.3", "--cooldown", "0", "--output", str(out), "--no-mlflow"],
                             stderr=subprocess.PIPE, text=True)
    lines = []
    for line in child.stderr:
        lines.append(line)
        if "level 2/2" in line:
            child.send_signal(signal.SIGINT)
    assert child.wait(60) == 130, "".join(lines)
    assert any("interrupted after 1 of 2 levels" in line for line in lines)
    levels = pd.read_csv(out / "levels.csv")
    assert levels["rate_rps"].tolist() == [4.0] and levels["energy_J"].notna().all()
    assert any("interrupted" in n for n in json.loads((out / "summary.json").read_text())["notes"])


def test_automatic_warmup_and_window_follow_the_latency(server, tmp_path):
    """No lengths given: the warm-up lasts until 1.5 × its median latency, the window 3 × it (minimums set low)."""
    config = SweepConfig(endpoint=server.url, model=server.model, rates=(4.0,), max_tokens=4, idle_s=0, cooldown_s=0,
                         warmup_min_s=0.3, steady_min_s=0.5, arrival="constant")
    result = run_sweep(config, load_prompts(None), output=tmp_path / "o", meter=False, experiment=None,
                       log=lambda _m: None)
    lv = result.analysis.levels.iloc[0]
    requests = result.record.requests
    warm = requests[requests["phase"] == "warmup"]
    answered = warm[warm["end"] <= lv["steady_start"]]
    assert lv["warmup_how"].startswith("auto") and len(answered) >= 1
    median = float(lv["steady_how"].rsplit("latency ", 1)[1].removesuffix(" s)"))
    assert median == pytest.approx(answered["latency_s"].median(), rel=0.3)
    assert lv["warmup_s"] >= max(0.3, 1.5 * median) - 1e-3
    assert lv["duration_s"] == pytest.approx(max(0.5, 3 * median), rel=1e-3)
    assert lv["warmup_requests"] == len(warm) >= 2 and lv["requests"] >= 2


def test_cli_json_is_the_whole_stdout(server, tmp_path, capsys):
    """`genai --json`: one JSON document on stdout (levels, saturation, files, run), the progress on stderr."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = genai_main(["--endpoint", server.url, "--model", server.model, "--rps", "4", "--requests", "2",
                       "--warmup", "0", "--max-tokens", "3", "--arrival", "constant", "--idle-seconds", "0",
                       "--cooldown", "0", "--output", str(tmp_path / "o"), "--tracking-uri", uri, "--json"])
    mlflow.set_tracking_uri(None)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    data = json.loads(captured.out)
    assert {"model", "energy_source", "saturation", "levels", "devices", "notes", "files", "mlflow_run_id"} <= set(data)
    (level,) = data["levels"]
    assert level["rate_rps"] == 4.0 and level["ok"] == 2 and level["energy_J"] > 0
    assert data["mlflow_run_id"] and not data["interrupted"]
    assert all(Path(f).exists() for f in data["files"]) and "MLflow run" in captured.err
