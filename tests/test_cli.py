"""The command line, run as a user would: a subprocess on real commands."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, **kw):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "green_mlops", *args], capture_output=True, text=True,
                          env=full_env, timeout=120, **kw)


def test_hardware_explains_every_component():
    r = cli("hardware")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for word in ("component", "cpu", "dram", "gpu", "estimated", "tdp-utilisation-model"):
        assert word in out
    assert "estimated by a model" in out


def test_hardware_json():
    r = cli("hardware", "--json")
    data = json.loads(r.stdout)
    assert {"machine", "findings", "sources"} <= set(data)
    statuses = {f["component"]: f["status"] for f in data["findings"]}
    assert statuses["cpu"] in ("measured", "estimated") or any(k.startswith("cpu") for k in statuses)
    assert all(s["provenance"] in ("measured", "estimated") for s in data["sources"])


def test_measure_runs_command_and_keeps_its_exit_code(tmp_path):
    out = tmp_path / "energy.json"
    trace = tmp_path / "trace.csv"
    r = cli("measure", "--idle", "0.3", "--interval", "0.05", "--output", str(out), "--trace", str(trace),
            "--", sys.executable, "-c", "import time,sys; time.sleep(0.5); print('hello'); sys.exit(3)")
    assert r.returncode == 3, r.stderr
    assert "hello" in r.stdout
    assert "energy J" in r.stderr and "energy Wh" in r.stderr and "net J" in r.stderr
    data = json.loads(out.read_text())
    assert data["exit_code"] == 3 and data["command"][-1].endswith("sys.exit(3)")
    res = data["result"]
    assert res["duration_s"] >= 0.5 and res["total_J"] > 0
    assert data["idle"]["duration_s"] >= 0.3
    assert all(s["provenance"] in ("measured", "estimated") and s["method"] for s in res["sources"])
    assert trace.exists()


def test_measure_without_output_prints_and_writes_nothing(tmp_path):
    r = cli("measure", "--interval", "0.05", "--", sys.executable, "-c", "pass", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "energy J" in r.stderr and "nothing written (--output FILE" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_options_that_do_not_apply_are_refused_and_defaults_are_shown():
    r = cli("demo", "--epochs", "1")
    assert r.returncode == 2 and "--epochs applies only with --meter-only" in r.stderr
    r = cli("demo", "--help")
    assert "--meter-only: epochs (default 5)" in " ".join(r.stdout.split())
    r = cli("sweep", "--help")
    flat = " ".join(r.stdout.split())
    for shown in ("(default: green-mlops-sweep)", "(default: 60)", "(default: 0)", "(default: 0.0)",
                  "(default: auto)", "(default: no budget)", "(default: every grid point once)"):
        assert shown in flat, shown


def test_hardware_gives_ram_in_one_unit():
    out = cli("hardware").stdout
    assert " GiB RAM" in out.splitlines()[0]
    assert " GB RAM" not in out and "W/GB " not in out


def test_measure_bad_input():
    r = cli("measure")
    assert r.returncode == 2 and "missing command" in r.stderr
    r = cli("measure", "--interval", "0", "--", "true")
    assert r.returncode == 2 and "interval must be between" in r.stderr
    r = cli("measure", "--idle", "-1", "--", "true")
    assert r.returncode == 2 and "0 or more seconds" in r.stderr
    r = cli("measure", "--", "no-such-command-xyz")
    assert r.returncode == 127 and "cannot run" in r.stderr
    r = cli("hardware", env={"GREEN_MLOPS_CPU_TDP_W": "lots"})
    assert r.returncode == 2 and "GREEN_MLOPS_CPU_TDP_W" in r.stderr


def test_sigterm_still_writes_what_was_measured(tmp_path):
    out = tmp_path / "energy.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "green_mlops", "measure", "--output", str(out), "--",
                          sys.executable, "-c", "import time; time.sleep(30)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(2.0)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, err
    data = json.loads(out.read_text())
    assert data["signals_received"] == ["SIGTERM"]
    assert data["result"]["duration_s"] > 0.5


def test_ctrl_c_reaches_the_command_once_and_results_are_written(tmp_path):
    """Ctrl-C in a terminal signals the whole foreground process group: simulate that."""
    out = tmp_path / "energy.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = ("import signal, sys, time\n"
             "hits = []\n"
             "signal.signal(signal.SIGINT, lambda *a: hits.append(1))\n"
             "end = time.time() + 3\n"
             "while time.time() < end and not hits: time.sleep(0.01)\n"
             "time.sleep(0.3)\n"
             "sys.exit(10 + len(hits))\n")
    p = subprocess.Popen([sys.executable, "-m", "green_mlops", "measure", "--output", str(out), "--",
                          sys.executable, "-c", child],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    time.sleep(2.0)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 11, err  # the command saw exactly one SIGINT and chose its exit code
    data = json.loads(out.read_text())
    assert data["signals_received"] == ["SIGINT"] and data["exit_code"] == 11


@pytest.mark.timeout(600)
def test_demo_runs_end_to_end(tmp_path):
    r = cli("demo", "--meter-only", "--epochs", "2", "--idle", "0.5", "--output", str(tmp_path / "demo"))
    assert r.returncode == 0, r.stderr
    assert "epoch 2: accuracy" in r.stdout and "total" in r.stdout
    assert (tmp_path / "demo" / "trace.parquet").exists()
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert len(summary["epochs"]) == 2
