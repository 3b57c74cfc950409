"""The command line, run as a user would: a subprocess on real commands."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
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


def test_sigint_to_measures_own_pid_reaches_the_command_once(tmp_path):
    """Issue 15, item 8: `kill -INT <measure's pid>` (not the group) is passed on; the command sees one SIGINT."""
    out = tmp_path / "energy.json"
    child = ("import signal, sys, time\n"
             "hits = []\n"
             "signal.signal(signal.SIGINT, lambda *a: hits.append(1))\n"
             "end = time.time() + 5\n"
             "while time.time() < end and not hits: time.sleep(0.01)\n"
             "time.sleep(0.3)\n"
             "sys.exit(10 + len(hits))\n")
    p = subprocess.Popen([sys.executable, "-m", "green_mlops", "measure", "--output", str(out), "--",
                          sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(2.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 11, err
    data = json.loads(out.read_text())
    assert data["signals_received"] == ["SIGINT"] and data["exit_code"] == 11


def test_ctrl_c_typed_at_a_real_terminal_reaches_the_command_once(tmp_path):
    """Under a real pseudo-terminal, measure hands the foreground to the command: a typed Ctrl-C reaches it once."""
    import pty
    import select

    out = tmp_path / "energy.json"
    child = ("import signal, sys, time\n"
             "hits = []\n"
             "signal.signal(signal.SIGINT, lambda *a: hits.append(1))\n"
             "print('ready', flush=True)\n"
             "end = time.time() + 8\n"
             "while time.time() < end and not hits: time.sleep(0.01)\n"
             "time.sleep(0.3)\n"
             "sys.exit(10 + len(hits))\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: measure, with the pty as its controlling terminal
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "green_mlops", "measure", "--output", str(out), "--",
                                  sys.executable, "-c", child])
    seen, deadline = b"", time.monotonic() + 60
    while b"ready" not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                seen += os.read(fd, 1024)
            except OSError:
                break
    time.sleep(0.3)
    os.write(fd, b"\x03")  # Ctrl-C typed at the terminal
    while True:
        try:
            if not os.read(fd, 1024):
                break
        except OSError:
            break
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 11, seen
    assert json.loads(out.read_text())["exit_code"] == 11


def test_sigterm_during_idle_still_writes_the_json(tmp_path):
    """Issue 15, item 8: a SIGTERM while idle power is measured ends the idle, skips the command, writes the JSON."""
    out, marker = tmp_path / "energy.json", tmp_path / "ran"
    p = subprocess.Popen([sys.executable, "-m", "green_mlops", "measure", "--idle", "30", "--interval", "0.05",
                          "--output", str(out), "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(2.5)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, err
    data = json.loads(out.read_text())
    assert data["signals_received"] == ["SIGTERM"] and data["exit_code"] == 143
    assert "idle" in data["interrupted"] and data["idle"]["duration_s"] > 0.2
    assert not marker.exists()


def test_measure_output_paths_checked_before_the_command_runs(tmp_path):
    """Issue 15, item 3: an --output or --trace that cannot be written is refused in one line before the command runs.

    We run as root, for whom a read-only folder is writable; a path under a regular FILE fails for root too
    (ENOTDIR), which is the case the issue reported (the output's parent is a file)."""
    blocker, marker = tmp_path / "a_file", tmp_path / "ran"
    blocker.write_text("not a folder")
    command = ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    for flag in ("--output", "--trace"):
        r = cli("measure", flag, str(blocker / "x.json"), *command)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and flag in lines[0] and "is a file, not a folder" in lines[0], r.stderr
        assert not marker.exists()
    # The folder disappears while the command runs (the disk fills, say): the command's exit code still stands.
    folder = tmp_path / "out"
    r = cli("measure", "--output", str(folder / "x.json"), "--", sys.executable, "-c",
            f"import shutil, sys; shutil.rmtree({str(folder)!r}); open({str(folder)!r}, 'w'); sys.exit(3)")
    assert r.returncode == 3, r.stderr
    assert "could not write the result" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.timeout(900)
def test_demo_search_runs_end_to_end_and_says_what_to_click(tmp_path, capsys):
    """The README's main job, reduced to 2 optimiser steps a trial (the same path: six trials metered and logged,
    the ranking, the MLflow UI command); in-process, so a busy machine makes it slower, never a timeout."""
    from mlflow.tracking import MlflowClient

    from green_mlops import names
    from green_mlops.commands.demo import EXPERIMENT, demo

    assert demo(str(tmp_path / "demo"), max_steps=2) == 0
    out = capsys.readouterr().out
    store = f"sqlite:///{tmp_path / 'demo' / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {store}" in out and "pareto_rank" in out
    for click in (EXPERIMENT, "Chart view", "Scatter chart", names.LIFECYCLE_J, "Model metrics"):
        assert click in out, click
    ranking = pd.read_csv(tmp_path / "demo" / "ranking.csv")
    assert sorted(zip(ranking["arch"], ranking["batch_size"])) == [(a, b) for a in ("lenet", "mobilenet")
                                                                   for b in (32, 64, 128)]
    assert (ranking["state"] == "COMPLETE").all() and (ranking["lifecycle_J"] > 0).all()
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    trials = [r for r in runs if r.data.tags.get(names.SWEEP_ROLE) == "trial"]
    assert len(trials) == 6
    for r in trials:  # what the printed steps point at is there
        assert {"accuracy", names.LIFECYCLE_J, names.ENERGY_TOTAL, names.POWER_TOTAL} <= set(r.data.metrics)
        assert any(t.startswith(names.PROVENANCE_TAG_PREFIX) for t in r.data.tags)
        assert any(t.startswith(names.METHOD_TAG_PREFIX) for t in r.data.tags)


@pytest.mark.timeout(600)
def test_demo_meter_only_runs_end_to_end(tmp_path, capsys):
    from green_mlops.cli import main

    assert main(["demo", "--meter-only", "--epochs", "2", "--idle", "0.5", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "epoch 2: accuracy" in out and "total" in out
    assert (tmp_path / "demo" / "trace.parquet").exists()
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert len(summary["epochs"]) == 2
    assert main(["demo", "--meter-only", "--epochs", "1", "--idle", "0", "--output", str(tmp_path / "j"), "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["epochs"]) == 1 and "epoch 1: accuracy" in captured.err


def test_version():
    from green_mlops import __version__

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"green-mlops {__version__}"


def test_closed_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line, as `| head -1` is after its line
    try:
        r = subprocess.run([sys.executable, "-m", "green_mlops", "hardware", "--json"], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
    assert r.returncode == 1  # what the Python docs' recipe exits with


def test_measure_output_dash_is_stdout(tmp_path):
    r = cli("measure", "--interval", "0.05", "--output", "-", "--", sys.executable, "-c", "print('hi')", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "-").exists()
    text = r.stdout
    assert text.startswith("hi\n")
    assert json.loads(text[len("hi\n"):])["exit_code"] == 0


def test_missing_extra_names_the_pip_install_line(tmp_path):
    blocker = tmp_path / "scipy"  # a package that fails to import, as if scipy were not installed
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named scipy')\n")
    r = cli("report", "--experiment", "x", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert r.returncode == 2
    assert "pip install 'green-mlops[analysis]'" in r.stderr and "Traceback" not in r.stderr
