"""One sweep worker process for multi-worker tests: ``python -m tests.sweep_worker STORAGE TRACKING OUT``."""
from __future__ import annotations

import sys
from functools import partial

from green_mlops.search import Sweep, SweepSettings, build_space
from tests.search_runner import check_arch, run_trial

if __name__ == "__main__":
    storage, tracking, out = sys.argv[1:4]
    space = build_space("mlp8,mlp16,mlp32", "64,128", check_arch=check_arch)
    settings = SweepSettings(study="shared", storage=storage, experiment="multi", tracking_uri=tracking,
                             output_dir=out, progress=False, heartbeat_s=1)
    report = Sweep(space, settings, partial(run_trial, epochs=3)).run()
    print(f"ran {report.trials_run_here} complete={report.complete}", flush=True)
