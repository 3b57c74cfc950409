"""Two-process DDP on the CPU (gloo) with the EnergyCallback, plus an independent meter on rank 0.

Run as a script (Lightning's "ddp" launcher re-runs it for rank 1): ``python tests/ddp_script.py OUT.json``.
"""
from __future__ import annotations

import json
import os
import sys

import pytorch_lightning as pl

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from green_mlops.lightning import EnergyCallback  # noqa: E402
from green_mlops.meter import EnergyMeter, Settings, discover  # noqa: E402
from tests.lightning_digits import DigitsMLP, digits_loaders  # noqa: E402


def main(out: str) -> None:
    rank0 = os.environ.get("LOCAL_RANK", "0") == "0"
    independent = None
    if rank0:
        independent = EnergyMeter(0.05, sources=discover(Settings.from_env(), gpu=False).sources).start()
    cb = EnergyCallback(interval=0.05)
    train, val = digits_loaders()
    trainer = pl.Trainer(strategy="ddp", accelerator="cpu", devices=2, max_epochs=2, logger=False,
                         callbacks=[cb], enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False)
    trainer.fit(DigitsMLP(), train, val)
    if independent is not None and trainer.global_rank == 0:
        independent.stop()
        a, b = cb.meter.start_time, cb.meter.end_time
        same_window = independent.energy(a, b)
        json.dump({"world_size": trainer.world_size, "callback_total_J": cb.summary["energy_J"],
                   "callback_local_sources": [s.info.name for s in cb.meter.sources],
                   "independent_total_J": same_window.total_J,
                   "independent_dram_J": same_window.domain_J("dram"),
                   "callback_dram_J": cb.summary["local"]["domains"]["dram"]["energy_J"],
                   "train_epoch_J": cb._loop_energy.get("train")}, open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1])
