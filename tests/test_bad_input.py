"""Bad configuration and bad paths (issue 15, items 3, 5, 8): refused in one line before any work, never a traceback.

Run as a user would (``green_mlops.cli.main``, or a subprocess where the process matters). We run as
root, for whom a read-only folder is writable: the unwritable paths here lie under a regular FILE
(ENOTDIR fails for root too), the case the issue reported.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest

from green_mlops.cli import main
from green_mlops.meter import EnergyMeter, discover
from green_mlops.meter.settings import Settings, SettingsError, SettingsWarning
from green_mlops.search import StorageError, open_storage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "a_file"
    f.write_text("not a folder")
    return f


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# -- item 5: numbers from the environment --------------------------------------------------------------

@pytest.mark.parametrize(("var", "raw"), [("GREEN_MLOPS_CPU_TDP_W", "inf"), ("GREEN_MLOPS_CPU_TDP_W", "nan"),
                                          ("GREEN_MLOPS_CPU_TDP_W", "1e9"), ("GREEN_MLOPS_GPU_COUNTER_INTERVAL", "inf"),
                                          ("GREEN_MLOPS_DRAM_VOLTAGE_V", "12"), ("GREEN_MLOPS_DRAM_DIMMS", "-2"),
                                          ("GREEN_MLOPS_GPU_SAMPLE_INTERVAL", "0"),
                                          ("GREEN_MLOPS_GPU_SAMPLE_INTERVAL", "600")])
def test_impossible_numbers_are_refused_naming_the_variable(var, raw):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: raw})
    msg = one_line(str(err.value))
    assert msg.startswith(f"{var}={raw!r}") and "set it to e.g." in msg


def test_unusual_numbers_warn_and_are_used():
    with pytest.warns(SettingsWarning, match="GREEN_MLOPS_CPU_TDP_W='5000' is outside the usual"):
        s = Settings.from_env({"GREEN_MLOPS_CPU_TDP_W": "5000"})
    assert s.cpu_tdp_w == 5000.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Settings.from_env({"GREEN_MLOPS_CPU_TDP_W": "350"}).cpu_tdp_w == 350.0


def test_gpu_read_intervals_from_the_environment():
    s = Settings.from_env({"GREEN_MLOPS_GPU_SAMPLE_INTERVAL": "0.5"})
    assert s.gpu_sample_interval == 0.5 and s.counter_interval(fine_curve=True) == 5.0
    assert s.counter_interval(fine_curve=False) == 0.5
    assert Settings.from_env({"GREEN_MLOPS_GPU_COUNTER_INTERVAL": "2"}).counter_interval(fine_curve=True) == 2.0
    with pytest.warns(SettingsWarning, match="GREEN_MLOPS_GPU_SAMPLE_INTERVAL='5' is outside the usual"):
        Settings.from_env({"GREEN_MLOPS_GPU_SAMPLE_INTERVAL": "5"})  # the driver keeps ~2.4 s of samples


def test_infinite_tdp_no_longer_gives_a_silent_zero(monkeypatch):
    """The issue's case: TDP=inf made CPU energy 0.0 J. Now the meter refuses to start, in one line."""
    monkeypatch.setenv("GREEN_MLOPS_CPU_TDP_W", "inf")
    with pytest.raises(SettingsError, match="GREEN_MLOPS_CPU_TDP_W='inf' must be a finite number"):
        EnergyMeter(0.05)
    r = subprocess.run([sys.executable, "-m", "green_mlops", "hardware"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "GREEN_MLOPS_CPU_TDP_W": "inf"})
    assert r.returncode == 2 and "GREEN_MLOPS_CPU_TDP_W" in one_line(r.stderr)


# -- item 3: every output path checked before the expensive step ---------------------------------------

def test_sweep_output_at_a_file_is_refused_before_any_training(a_file, tmp_path, capsys):
    code = main(["sweep", "--archs", "lenet", "--batch-sizes", "64", "--output", str(a_file / "out"),
                 "--storage", f"sqlite:///{tmp_path}/study.db", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a file, not a folder" in one_line(err) and "Traceback" not in err
    assert not (tmp_path / "study.db").exists() and not (tmp_path / "mlflow.db").exists()  # nothing opened


def test_report_output_at_a_file_is_refused_before_reading_runs(a_file, tmp_path, capsys):
    code = main(["report", "--experiment", "x", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                 "--output", str(a_file / "report")])
    assert code == 2 and "is a file, not a folder" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "mlflow.db").exists()


# -- item 8: journal under a file, junk runs table, the GenAI probe's timeout --------------------------

def test_journal_storage_under_a_file_is_one_line(a_file):
    with pytest.raises(StorageError) as err:
        open_storage(f"journal:{a_file / 'study.log'}")
    assert "is a file, not a folder" in one_line(str(err.value))


@pytest.mark.parametrize("content", [b"a,b\n1,2\n", b"\x8c\x00\xff garbage", b""])
def test_report_on_a_junk_runs_csv_is_one_line(tmp_path, content, capsys):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(content)
    code = main(["report", "--runs", str(junk), "--output", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(junk) in one_line(err)


def test_genai_probe_honours_a_short_timeout(tmp_path, capsys):
    """An endpoint that accepts connections and never answers: with --timeout 2 the probe gives up after about
    2 s (it used to wait at least 180 s), with one line saying what to check."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        started = time.monotonic()
        code = main(["genai", "--endpoint", f"http://127.0.0.1:{listener.getsockname()[1]}", "--model", "m",
                     "--rps", "1", "--requests", "1", "--timeout", "2", "--meter", "none", "--idle-seconds", "0",
                     "--no-mlflow", "--output", str(tmp_path / "out")])
        took = time.monotonic() - started
    finally:
        stop.set()
        t.join()
        for s in held:
            s.close()
        listener.close()
    err = capsys.readouterr().err
    assert code == 2 and "did not answer" in err and "Traceback" not in err
    assert took < 60, f"{took:.0f} s: the probe waited for its 180 s floor"


# -- issue 14: one set of checks, each caller's own error type -----------------------------------------

def test_shared_checks_raise_each_callers_error_naming_a_valid_value():
    from green_mlops.genai import ConfigError, SweepConfig
    from green_mlops.prometheus import PrometheusExporter
    from green_mlops.search.budget import EnergyBudget

    cases = [
        (lambda: open_storage("sqlite:///x.db", heartbeat_s=0), StorageError, "heartbeat interval (seconds) must be a whole number ≥ 1"),
        (lambda: SweepConfig(endpoint="http://h:1", model="m", rates=(1,), requests=1, idle_s=-1), ConfigError,
         "idle must be 0 or more seconds (e.g. 10)"),
        (lambda: SweepConfig(endpoint="http://h:1", model="m", rates=(1,), requests=1, model_bytes=0), ConfigError,
         "model bytes must be a positive number"),
        (lambda: EnergyMeter(0.1, sources=discover(Settings.from_env(), gpu=False).sources).measure_idle("5"), ValueError,
         "idle time must be 0 or more seconds"),
        (lambda: EnergyBudget(float("inf")), ValueError, "energy budget in joules must be a positive number (e.g. 5000)"),
        (lambda: PrometheusExporter(0, power_window_s=0), ValueError, "power_window_s must be more than 0 seconds"),
    ]
    for make, error, message in cases:
        with pytest.raises(error) as err:
            make()
        assert type(err.value) is error and message in one_line(str(err.value))

