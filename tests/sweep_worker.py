"""One sweep worker process for multi-worker tests: ``python -m tests.sweep_worker STORAGE TRACKING OUT``."""
from __future__ import annotations

import sys
from functools import partial

from green_mlops.search import Sweep, SweepSettings, build_space
from tests.search_runner import check_arch, run_trial

if __name__ == "__main__":
    storage, tracking, out = sys.argv[1:4]
    if sys.argv[4:] == ["prune"]:  # the energy-aware search: pruning at each half epoch (tests/test_search_aware.py)
        space = build_space("mlp16", "64,16", lrs="0.5,0.0001", check_arch=check_arch)
        settings = SweepSettings(study="shared-prune", storage=storage, experiment="multi-prune",
                                 tracking_uri=tracking, output_dir=out, progress=False, heartbeat_s=1, prune=True,
                                 prune_every=0.5)
        epochs = 1
    else:
        space = build_space("mlp8,mlp16,mlp32", "64,128", check_arch=check_arch)
        settings = SweepSettings(study="shared", storage=storage, experiment="multi", tracking_uri=tracking,
                                 output_dir=out, progress=False, heartbeat_s=1)
        epochs = 3
    report = Sweep(space, settings, partial(run_trial, epochs=epochs)).run()
    print(f"ran {report.trials_run_here} complete={report.complete}", flush=True)
