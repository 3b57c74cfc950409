"""A runs.csv in the export schema whose answers are known by construction (tests/data/synthetic_runs.csv).

Six models × five batch sizes × three repeats on one GPU host. Idle power is 100 W GPU + 40 W CPU + 10 W
DRAM = 150 W. While a model runs: GPU 250 + 10·i W (i = model index; 50 W less in inference), CPU 60 W and
DRAM 15 W, both constant estimates (tdp-utilisation-model, per-gb-model). Time per sample is
MACs × 1e-12 s × SHAPE[batch size], × a lognormal noise of 1 % per run; inference takes a third of the
training time per sample. So net energy = (device power − idle power) × time, the energy-per-sample
minimum is at batch size 256 (SHAPE), training ≈ 3× inference per sample, and macs_param ranks energy.

    python -m tests.synthetic_runs        # rewrites tests/data/synthetic_runs.csv
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from green_mlops.analysis.schema import EXPORT_COLUMNS

PATH = Path(__file__).parent / "data" / "synthetic_runs.csv"
IDLE = {"gpu": 100.0, "cpu": 40.0, "dram": 10.0}
CPU_W, DRAM_W = 60.0, 15.0
SHAPE = {32: 2.0, 64: 1.5, 128: 1.2, 256: 1.0, 512: 1.05}  # time per sample relative to the best size
SAMPLES = 50_000
NOISE = 0.01


def model(i: int) -> dict[str, float]:
    """Model i: MACs grow faster than parameters, so macs_param rises with i."""
    params = 1e6 * (1 + 0.1 * i)
    return {"arch": f"m{i}", "macs": 1e8 * (1 + i) ** 2, "trainable_params": params, "total_params": params,
            "flops": 2e8 * (1 + i) ** 2, "model_size_bytes": 4 * params, "gpu_W": 250.0 + 10 * i}


def make_runs(models: int = 6, repeats: int = 3, shape: dict[int, float] | None = None, seed: int = 17,
              noise: float = NOISE) -> pd.DataFrame:
    """The synthetic export (see the module docstring); ``shape`` changes where the optimum lies."""
    rng = np.random.default_rng(seed)
    shape = shape or SHAPE
    rows = []
    for i in range(models):
        m = model(i)
        for bs, factor in shape.items():
            for r in range(repeats):
                per_sample = m["macs"] * 1e-12 * factor * float(rng.lognormal(0, noise))
                row = {k: v for k, v in m.items() if k != "gpu_W"}
                row.update(batch_size=bs, repeat=r, seed=1000 + r, accuracy=0.5 + 0.05 * i,
                           train_samples=SAMPLES, inference_samples=SAMPLES)
                for phase, secs, gpu in (("train", per_sample * SAMPLES, m["gpu_W"]),
                                         ("inference", per_sample * SAMPLES / 3, m["gpu_W"] - 50)):
                    power = {"gpu": gpu, "cpu": CPU_W, "dram": DRAM_W}
                    row[f"{phase}_time_s"] = secs
                    for d, w in power.items():
                        row[f"{phase}_{d}_J"] = w * secs
                        row[f"{phase}_{d}_net_J"] = (w - IDLE[d]) * secs
                    row[f"{phase}_energy_J"] = sum(power.values()) * secs
                    row[f"{phase}_net_J"] = (sum(power.values()) - sum(IDLE.values())) * secs
                    row[f"{phase}_energy_per_sample_J"] = row[f"{phase}_energy_J"] / SAMPLES
                row.update({f"idle_{d}_W": w for d, w in IDLE.items()}, idle_total_W=sum(IDLE.values()),
                           method_gpu="nvml-energy-counter", method_cpu="tdp-utilisation-model",
                           method_dram="per-gb-model", gpu="NVIDIA H200")
                rows.append(row)
    return pd.DataFrame(rows)[[c for c in EXPORT_COLUMNS if c in rows[0]]]


if __name__ == "__main__":
    PATH.parent.mkdir(exist_ok=True)
    make_runs().to_csv(PATH, index=False)
    print(f"{PATH}: {len(make_runs())} runs")
