"""Steady-state levels against a constructed power trace and request timeline whose answer is known by construction.

The trace is a real ``green-mlops measure --trace`` CSV file (cumulative energy per device at 0.1 s
ticks) joined by the same code as a server's; only the numbers in it are chosen here.
"""
import math

import numpy as np
import pandas as pd
import pytest

from green_mlops.genai import join_server_trace
from green_mlops.genai.cpu_share import METHOD, METHOD_GROSS, CpuSpan, cpu_clock, loadgen_share
from green_mlops.genai.record import LevelInfo, SweepRecord
from green_mlops.genai.window import completed_in, overlap_weights, served

T0 = 1_800_000_000.0  # wall clock of the trace's first tick
IDLE = (0.0, 10.0)  # seconds after T0
WARMUP, STEADY, STOP = 10.0, 20.0, 50.0  # first send, steady window start, steady window end (no sends after)
RATE, LATENCY, TOKENS = 2.0, 4.0, 100
# watts per device in each stretch: (idle, warm-up, steady, drain and after)
POWER = {"gpu0": (50.0, 200.0, 250.0, 150.0), "cpu": (10.0, 20.0, 30.0, 30.0)}
SOURCES = {"gpu0": "gpu, measured, nvml-energy-counter", "cpu": "cpu, estimated, tdp-utilisation-model"}
IDLE_CPU = CpuSpan(duration_s=10.0, process_s=0.5, busy_s=2.0)  # client 0.05 CPU/s, machine 0.2 CPU/s at idle
STEADY_CPU = CpuSpan(duration_s=30.0, process_s=4.5, busy_s=36.0)  # extra over idle: client 3 s of 30 busy s


def _power(name: str, t: np.ndarray) -> np.ndarray:
    idle, warm, steady, drain = POWER[name]
    return np.select([t < WARMUP, t < STEADY, t < STOP], [idle, warm, steady], drain)


def _write_trace(path):
    t = np.round(np.arange(0.0, 70.0 + 1e-9, 0.1), 10)
    lines = [f"# {name}: {spec}" for name, spec in SOURCES.items()]
    frame = pd.DataFrame({"time": T0 + t})
    for name in SOURCES:  # cumulative energy of piecewise-constant power, exact at every tick
        frame[f"{name}.energy_J"] = np.concatenate([[0.0], np.cumsum(_power(name, t[:-1]) * np.diff(t))])
    path.write_text("\n".join(lines) + "\n" + frame.to_csv(index=False))
    return path


def _record(tmp_path):
    sent = np.arange(WARMUP, STOP, 1.0 / RATE)  # constant arrivals, every request answered after exactly LATENCY
    requests = pd.DataFrame({
        "level": 0, "index": range(len(sent)), "phase": np.where(sent < STEADY, "warmup", "steady"),
        "prompt_index": 0, "scheduled": T0 + sent, "sent": T0 + sent, "end": T0 + sent + LATENCY,
        "first_token": T0 + sent + 0.5, "ok": True, "status": 200, "error_kind": "", "error": "",
        "output_tokens": TOKENS, "prompt_tokens": 10, "tokens_source": "usage", "stream_chunks": TOKENS,
        "finish_reason": "length", "latency_s": LATENCY, "ttft_s": 0.5, "send_lag_s": 0.0})
    level = LevelInfo(0, RATE, T0 + WARMUP, T0 + STOP, T0 + sent[-1] + LATENCY, steady_start=T0 + STEADY,
                      warmup_how="fixed 10 s", steady_how="fixed 30 s", cpu=STEADY_CPU.as_dict())
    record = SweepRecord({"model": "constructed", "loadgen_same_machine": "true"}, (T0 + IDLE[0], T0 + IDLE[1]),
                         [level], requests, [], IDLE_CPU.as_dict())
    record.save(tmp_path / "sweep")
    return tmp_path / "sweep"


def test_energy_per_request_over_the_steady_window_is_known_by_construction(tmp_path):
    folder = _record(tmp_path)
    result = join_server_trace(folder, _write_trace(tmp_path / "trace.csv"), experiment=None, log=lambda _m: None)
    lv = result.analysis.levels.iloc[0]
    steady_net = {n: (p[2] - p[0]) * (STOP - STEADY) for n, p in POWER.items()}  # 6000 J GPU, 600 J CPU
    # 8 requests always in flight, each 1/4 of its service per second: n_W = λ·|W| = 60 exactly
    assert lv["served_requests"] == pytest.approx(RATE * (STOP - STEADY))
    assert lv["energy_basis"] == "net of idle" and lv["duration_s"] == pytest.approx(STOP - STEADY)
    assert lv["energy_J"] == pytest.approx(sum(steady_net.values()))
    assert lv["energy_per_request_J"] == pytest.approx(110.0)  # (200 W + 20 W) × 30 s / 60
    assert lv["gpu_energy_per_request_J"] == pytest.approx(100.0) and lv["cpu_energy_per_request_J"] == pytest.approx(10.0)
    assert lv["energy_per_output_token_J"] == pytest.approx(110.0 / TOKENS)
    assert lv["served_rps"] * lv["energy_per_request_J"] == pytest.approx(lv["energy_per_s_W"])  # throughput-consistent
    # warm-up and drain: sent / answered, priced apart, and none of it in the measure
    assert lv["warmup_s"] == pytest.approx(STEADY - WARMUP) and lv["warmup_requests"] == 20
    assert lv["warmup_energy_J"] == pytest.approx((150 + 10) * (STEADY - WARMUP))
    assert lv["drain_s"] == pytest.approx(LATENCY - 1.0 / RATE) and lv["drain_completed"] == 8
    assert lv["drain_energy_J"] == pytest.approx((100 + 20) * lv["drain_s"])
    assert lv["requests"] == 60 and lv["completed_in_window"] == 60 and lv["completion_rps"] == pytest.approx(RATE)
    assert lv["energy_per_completed_request_J"] == pytest.approx(110.0)
    assert lv["latency_p50_s"] == pytest.approx(LATENCY) and lv["steady_over_latency"] == pytest.approx(7.5)
    assert lv["sustainable"] and lv["warmup_how"] == "fixed 10 s"
    # the client's CPU: (4.5 − 0.05·30) / (36 − 0.2·30) = 3 / 30 of the window's 600 J of net CPU energy
    assert lv["loadgen_cpu_share"] == pytest.approx(0.1) and lv["loadgen_cpu_energy_J"] == pytest.approx(60.0)
    assert lv["server_cpu_energy_J"] == pytest.approx(540.0) and lv["server_energy_J"] == pytest.approx(6540.0)
    assert lv["server_energy_per_request_J"] == pytest.approx(109.0)
    assert lv["loadgen_cpu_method"] == f"estimated: {METHOD}"
    devices = result.analysis.devices.set_index("device")
    assert devices.loc["gpu0", "provenance"] == "measured" and devices.loc["cpu", "provenance"] == "estimated"
    assert devices["energy_per_request_J"].sum() == pytest.approx(110.0)


def test_client_on_another_machine_keeps_the_cpu_whole(tmp_path):
    folder = _record(tmp_path)
    record = SweepRecord.load(folder)
    record.params["loadgen_same_machine"] = "false"
    record.save(folder)
    lv = join_server_trace(folder, _write_trace(tmp_path / "trace.csv"), experiment=None,
                           log=lambda _m: None).analysis.levels.iloc[0]
    assert "loadgen_cpu_share" not in lv and lv["energy_per_request_J"] == pytest.approx(110.0)


def test_overlap_weights_count_each_request_by_its_share_in_the_window():
    sent = np.array([0.0, 8.0, 12.0, 18.0, 30.0, 15.0])
    end = np.array([4.0, 12.0, 16.0, 22.0, 34.0, 15.0])  # before, straddling w0, inside, straddling w1, after, instant
    assert overlap_weights(sent, end, 10.0, 20.0) == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 1.0])
    frame = pd.DataFrame({"sent": sent, "end": end})
    assert served(frame, 10.0, 20.0) == pytest.approx(3.0) and completed_in(frame, 10.0, 20.0) == 3
    assert overlap_weights([1.0], [math.nan], 0.0, 2.0).tolist() == [0.0]


def test_loadgen_share_by_cpu_time():
    assert loadgen_share(STEADY_CPU, IDLE_CPU) == (pytest.approx(0.1), METHOD)
    assert loadgen_share(STEADY_CPU, None) == (pytest.approx(4.5 / 36), METHOD_GROSS)
    assert loadgen_share(CpuSpan(10, 5, 4), None)[0] == 1.0  # clipped: never more than the whole CPU energy
    share, why = loadgen_share(CpuSpan(10, 1, 1), CpuSpan(10, 0, 2))
    assert math.isnan(share) and "no busier than at idle" in why
    a = cpu_clock()
    sum(i * i for i in range(200_000))  # burn a little CPU in this process
    span = cpu_clock().since(a)
    assert span.process_s > 0 and span.busy_s >= 0 and span.duration_s > 0


def test_benchmark_merge_takes_medians_over_repeats_and_names_grid_gaps(tmp_path, capsys):
    from benchmarks import genai_h100

    def call(name, rows):
        folder = tmp_path / name
        folder.mkdir()
        pd.DataFrame(rows).to_csv(folder / genai_h100.LEVELS_FILE, index=False)
        return folder

    def row(model, rate, round_, joules):
        return {"model": model, "round": round_, "rate_rps": rate, "parameters": 1e9 if model == "1b" else 3e9,
                "energy_per_request_J": joules, "server_energy_per_request_J": joules - 1,
                "energy_per_output_token_J": joules / 128, "gpu_energy_per_request_J": joules / 2,
                "loadgen_cpu_share": 0.1, "latency_p50_s": 13.0, "duration_s": 39.0, "drain_s": 13.0,
                "sustainable": True, "unsustainable_reason": ""}

    a = call("a", [row("1b", r, 0, 40 / r) for r in (1, 2, 30)] + [row("3b", r, 0, 90 / r) for r in (1, 2)])
    b = call("b", [row("1b", r, 1, 44 / r) for r in (1, 2, 30)] + [row("3b", r, 1, 80 / r) for r in (1, 2)])
    assert genai_h100.main(["--merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 0
    table = pd.read_csv(tmp_path / "m" / "genai_by_rate.csv").set_index(["model", "rate_rps"])
    assert table.loc[("1b", 1.0), "energy_per_request_J"] == pytest.approx(42.0)
    assert table.loc[("1b", 1.0), ["energy_per_request_min_J", "energy_per_request_max_J", "repeats"]].tolist() == [
        40.0, 44.0, 2]
    out = capsys.readouterr().out
    assert out.rstrip().endswith("grid gaps: 3b at 30 rps") and "42.00 (40.00…44.00)" in out
    assert (tmp_path / "m" / "compare_energy_per_request.png").stat().st_size > 0
