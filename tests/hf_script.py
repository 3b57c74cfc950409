"""Hugging Face Trainer runs that need a process of their own (the test reads the MLflow store afterwards).

``python tests/hf_script.py late-add STORE OUT``: the callback is added with ``trainer.add_callback`` after
the trainer was made, and a step raises, uncaught: the run must still end failed, with its energy, at exit.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from green_mlops.transformers import EnergyCallback  # noqa: E402
from tests.hf_tiny import FailingTrainer, tiny_trainer  # noqa: E402


def late_add(store: str, out: Path) -> None:
    trainer = tiny_trainer(out, "none", [], cls=FailingTrainer, max_steps=24)
    trainer.add_callback(EnergyCallback(interval=0.02, tracking_uri=store, experiment="hf"))
    trainer.train()


if __name__ == "__main__":
    {"late-add": late_add}[sys.argv[1]](sys.argv[2], Path(sys.argv[3]))
