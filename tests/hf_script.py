"""Hugging Face Trainer runs that need a process of their own (the test reads the MLflow store afterwards).

``python tests/hf_script.py late-add STORE OUT``: the callback is added with ``trainer.add_callback`` after
the trainer was made, and a step raises, uncaught: the run must still end failed, with its energy, at exit.

``accelerate launch --multi_gpu --num_processes 2 tests/hf_script.py ddp STORE OUT`` (on the CPU: gloo): each
process writes ``OUT/rank{N}.json`` with what it metered; process zero also meters the host independently.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from green_mlops.meter import EnergyMeter, Settings, discover
from green_mlops.transformers import EnergyCallback
from tests.hf_tiny import FailingTrainer, tiny_trainer


def late_add(store: str, out: Path) -> None:
    trainer = tiny_trainer(out, "none", [], cls=FailingTrainer, max_steps=24)
    trainer.add_callback(EnergyCallback(interval=0.02, tracking_uri=store, experiment="hf"))
    trainer.train()


def ddp(store: str, out: Path) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = store
    local_zero = os.environ.get("LOCAL_RANK", "0") == "0"
    host = EnergyMeter(0.05, sources=discover(Settings.from_env(), gpu=False).sources).start() if local_zero else None
    cb = EnergyCallback(interval=0.05)
    trainer = tiny_trainer(out, ["mlflow"], [cb], samples=24, gradient_accumulation_steps=1, num_train_epochs=1)
    trainer.train()
    meter = getattr(cb.run, "meter", None)
    row = {"rank": trainer.args.process_index, "world_size": trainer.args.world_size,
           "global_step": trainer.state.global_step, "run": type(cb.run).__name__, "samples": cb._samples,
           "sources": [s.info.name for s in meter.sources] if meter is not None else [],
           "summary": cb.summary}
    if host is not None and meter is not None:
        host.stop()
        row["independent_dram_J"] = host.energy(meter.start_time, meter.end_time).domain_J("dram")
    (out / f"rank{row['rank']}.json").write_text(json.dumps(row, default=str))


if __name__ == "__main__":
    {"late-add": late_add, "ddp": ddp}[sys.argv[1]](sys.argv[2], Path(sys.argv[3]))
