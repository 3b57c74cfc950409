"""One sweep worker that stops after joining: ``python -m tests.first_use_worker STORAGE TRACKING READY GO``.

It imports everything, says it is ready (touches READY), waits for GO to appear, then opens the
study and the MLflow store exactly as ``green-mlops sweep`` does, and prints the parent run's id.
Two of them released together race on fresh stores (tests/test_search_workers.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from green_mlops.search import Sweep, SweepSettings, build_space
from tests.search_runner import check_arch, run_trial

if __name__ == "__main__":
    storage, tracking, ready, go = sys.argv[1:5]
    space = build_space("mlp8", "64", check_arch=check_arch)
    settings = SweepSettings(study="race", storage=storage, experiment="race", tracking_uri=tracking,
                             output_dir=Path(ready).parent / "out", progress=False, heartbeat_s=1)
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.001)
    sweep = Sweep(space, settings, run_trial)
    print(f"parent {sweep.parent_id}", flush=True)
