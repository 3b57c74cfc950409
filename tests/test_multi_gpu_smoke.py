"""Issue #8 scripts on the CPU: the DDP benchmark run for real with two gloo ranks, and its per-GPU and
replica bookkeeping on the rows a two-GPU run produces."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from benchmarks import multi_gpu_ddp, multi_gpu_genai

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_ddp_benchmark_runs_two_cpu_ranks_and_prints_the_table_last(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "multi_gpu_ddp.py"), "--accelerator", "cpu", "--devices", "2",
           "--steps", "5", "--rounds", "1", "--out", str(tmp_path)]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=110,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.rstrip().splitlines()[-1].startswith("| throughput energy / bare (1 rounds")
    assert "| GPUs | no GPU |" in r.stdout
    report = json.loads((tmp_path / "multi_gpu_ddp.json").read_text())
    assert [d["kind"] for d in report["details"]] == ["bare", "energy"]
    energy = report["details"][1]
    assert energy["world_size"] == 2
    rank0, rank1 = energy["ranks"]
    assert sorted(rank0["sources"]) == ["cpu", "dram"] and rank1["sources"] == {}  # the host metered once
    assert energy["each_counted_once"] and energy["callback_total_J"] > 0
    assert energy["mlflow"]["energy/fit_J"] == pytest.approx(energy["callback_total_J"])
    assert report["summary"]["mlflow_fit_J_matches"] and report["summary"]["gpus"] == {}
    assert len(report["summary"]["ratio_per_round"]) == 1


def _rank(rank: int, sources: dict[str, float], start: list[float], stop: list[float]) -> dict:
    return {"rank": rank, "device": f"cuda:{rank}", "local_total_J": sum(sources.values()),
            "sources": {k: {"energy_J": v, "provenance": "measured" if k.startswith("gpu") else "estimated",
                            "method": "m"} for k, v in sources.items()},
            "counter_start_J": start, "counter_stop_J": stop}


def test_each_gpu_is_compared_with_its_own_counter_and_a_double_count_shows():
    start, stop = [1000.0, 5000.0], [2000.0, 5500.0]  # the counters moved 1000 J and 500 J
    ranks = [_rank(0, {"gpu0": 995.0, "cpu": 40.0, "dram": 10.0}, start, stop), _rank(1, {"gpu1": 502.0}, start, stop)]
    cb = SimpleNamespace(summary={"energy_J": 995.0 + 50.0 + 502.0})
    checks = multi_gpu_ddp.energy_checks(cb, ranks, None)
    gpu0, gpu1 = checks["gpus"]
    assert (gpu0["counter_J"], gpu0["callback_J"], gpu0["metered_by_ranks"]) == (1000.0, 995.0, [0])
    assert gpu0["error_pct"] == pytest.approx(-0.5) and gpu1["error_pct"] == pytest.approx(0.4)
    assert checks["each_counted_once"] and checks["host_J"] == 50.0
    assert checks["total_error_pct"] == pytest.approx(100 * (1547 / 1550 - 1))

    rows = [{"round": 0, "kind": "bare", "steps_per_s": 50.0},
            {"round": 0, "kind": "energy", "steps_per_s": 49.5, **checks,
             "mlflow": {"energy/fit_J": 1547.0, "power_gpu_keys": ["power/gpu0_W"]}}]
    summary = multi_gpu_ddp.summarise(rows)
    assert summary["ratio_per_round"] == [pytest.approx(0.99)]
    assert summary["gpus"]["gpu0"]["within_target"] and summary["gpus"]["gpu1"]["within_target"]
    text = multi_gpu_ddp.table(summary, 2)
    assert "| gpu1 (metered by rank 1) | 500.0 | 502.0 | +0.40 % (0.40 %) | within 1 %; counted once |" in text

    twice = [ranks[0], _rank(1, {"gpu0": 995.0, "gpu1": 502.0}, start, stop)]  # rank 1 also metered GPU 0
    bad = multi_gpu_ddp.energy_checks(SimpleNamespace(summary={"energy_J": 2542.0}), twice, None)
    assert not bad["each_counted_once"] and bad["gpus"][0]["metered_by_ranks"] == [0, 1]


def _client(folder: Path, rate: float, gpu_J: float, requests: int, host: bool = True) -> Path:
    folder.mkdir()
    pd.DataFrame([{"level": 0, "rate_rps": rate, "requests": requests, "ok": requests, "failed": 0,
                   "output_tokens": 128 * requests, "prompt_tokens": 20 * requests, "start": 100.0, "end": 130.0,
                   "sustainable": True, "energy_basis": "net of idle"}]).to_csv(folder / "levels.csv", index=False)
    rows = [{"level": 0, "rate_rps": rate, "device": "gpu0", "domain": "gpu", "provenance": "measured",
             "method": "nvml-energy-counter", "energy_J": gpu_J}]
    if host:
        rows += [{"level": 0, "rate_rps": rate, "device": "cpu", "domain": "cpu", "provenance": "estimated",
                  "method": "tdp-utilisation-model", "energy_J": 30.0}]
    pd.DataFrame(rows).to_csv(folder / "devices.csv", index=False)
    pd.DataFrame([{"level": 0, "latency_s": x} for x in (1.0, 2.0, 3.0)]).to_csv(folder / "requests.csv", index=False)
    return folder


def test_replicas_sum_each_gpu_once_and_the_host_once(tmp_path):
    a, b = _client(tmp_path / "a", 5.0, 600.0, 60), _client(tmp_path / "b", 5.0, 400.0, 40)
    levels, devices = multi_gpu_genai.combine_replicas([a, b])
    (row,) = levels.to_dict("records")
    assert (row["rate_rps"], row["requests"], row["output_tokens"]) == (10.0, 100, 12800)
    assert row["energy_J"] == pytest.approx(600 + 400 + 30)  # client 1's host rows dropped
    assert row["energy_per_request_J"] == pytest.approx(10.3) and row["latency_p50_s"] == 2.0
    assert sorted(devices["device"]) == ["cpu", "gpu0", "gpu1"]
    assert devices.set_index("device")["energy_per_request_J"].to_dict() == pytest.approx(
        {"gpu0": 6.0, "gpu1": 4.0, "cpu": 0.3})


def test_a_replica_client_that_metered_every_gpu_is_refused(tmp_path):
    a = _client(tmp_path / "a", 5.0, 600.0, 60)
    b = _client(tmp_path / "b", 5.0, 400.0, 40)
    d = pd.read_csv(b / "devices.csv")
    pd.concat([d, d.assign(device="gpu1")]).to_csv(b / "devices.csv", index=False)
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        multi_gpu_genai.combine_replicas([a, b])
