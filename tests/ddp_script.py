"""Two-process DDP on the CPU (gloo) with the EnergyCallback, plus an independent meter on rank 0.

Run as a script (Lightning's "ddp" launcher re-runs it for rank 1):
``python tests/ddp_script.py OUT.json [lightning.pytorch|pytorch_lightning]``. Fits, then tests and predicts
on the 397 held-out digits; rank 0 writes each stage's energy and per-sample figures to OUT.json.
"""
from __future__ import annotations

import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from green_mlops import names
from green_mlops.lightning import EnergyCallback
from green_mlops.meter import EnergyMeter, Settings, discover
from tests.lightning_digits import digits_loaders, digits_mlp


def main(out: str, package: str) -> None:
    pl = importlib.import_module(package)
    rank0 = os.environ.get("LOCAL_RANK", "0") == "0"
    independent = None
    if rank0:
        independent = EnergyMeter(0.05, sources=discover(Settings.from_env(), gpu=False).sources).start()
    cb = EnergyCallback(interval=0.05)
    train, val = digits_loaders()
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=2, logger=False,
                         callbacks=[cb], enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False)
    model = digits_mlp(package)()
    trainer.fit(model, train, val)
    report = {}
    if independent is not None and trainer.global_rank == 0:
        independent.stop()
        a, b = cb.meter.start_time, cb.meter.end_time
        same_window = independent.energy(a, b)
        report = {"world_size": trainer.world_size, "callback_total_J": cb.summary["energy_J"],
                  "callback_local_sources": [s.info.name for s in cb.meter.sources],
                  "independent_total_J": same_window.total_J,
                  "independent_dram_J": same_window.domain_J("dram"),
                  "callback_dram_J": cb.summary["local"]["domains"]["dram"]["energy_J"],
                  "train_epoch_J": cb._loop_energy.get("train"),
                  "train_per_sample_J": cb.summary["metrics"].get(names.metric(names.ENERGY_PER_SAMPLE_TRAIN))}
    for stage, call in (("test", trainer.test), ("predict", trainer.predict)):
        call(model, val, **({"return_predictions": False} if stage == "predict" else {}))
        if report:
            report[f"{stage}_J"] = cb._loop_energy.get(stage)
            report[f"{stage}_per_sample_J"] = cb.summary["metrics"].get(
                names.metric(names.ENERGY_PER_SAMPLE_INFERENCE))
    if report:
        json.dump(report, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "pytorch_lightning")
