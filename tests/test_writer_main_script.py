"""The writer's delivery process must not re-run the user's training script (spawn imports __main__)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import os, time
with open(os.environ["SIDE_EFFECT"], "a") as f:
    f.write("ran\\n")
from mlflow.tracking import MlflowClient
from green_mlops.mlflow import MetricWriter
uri = os.environ["STORE"]
client = MlflowClient(uri)
run = client.create_run(client.create_experiment("script")).info.run_id
w = MetricWriter(run, uri)
w.log("energy/total_J", 1.0, 1)
assert w.flush(60)
w.close()
assert len(client.get_metric_history(run, "energy/total_J")) == 1
"""


def test_top_level_code_of_the_training_script_runs_once(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    side = tmp_path / "ran.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIDE_EFFECT": str(side), "STORE": f"sqlite:///{tmp_path / 'm.db'}"}
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert side.read_text() == "ran\n"
