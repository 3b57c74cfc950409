"""The paper's discriminative measurements on this GPU, through `green-mlops sweep` itself.

Part "archs": all sixteen architectures at batch 128. Part "batches": LeNet, ResNet18, MobileNetV2 and
VGG16 at batch sizes 32, 64, 128, 256, 512. Each trial: an idle baseline, one training epoch of 50k
synthetic CIFAR-shaped samples, inference over 50k (the paper's 5× replicated test set). Writes the
MLflow store, the study, and a CSV of time, energy, energy per sample, MACs and parameters per run.

    PYTHONPATH=. python3 benchmarks/zoo_h100.py --part archs     # then --part batches; --part csv to export

Kept as the record of the H100 runs (scripts/h100_runs_csv.py reads its COLUMNS). New runs: benchmarks/zoo.py
(digits50k, repeats in interleaved rounds, net energy per device).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from green_mlops import names

OUT = Path(os.environ.get("OUT", "bench_out"))
PARTS = {
    "archs": ("simpledla,dpn26,densenet121,efficientnetb0,googlenet,lenet,mobilenet,mobilenetv2,pnasnet,"
              "preactresnet18,regnetx_200mf,resnet18,resnext29_2x64d,senet18,shufflenetv2,vgg16", "128"),
    "batches": ("lenet,resnet18,mobilenetv2,vgg16", "32,64,256,512"),
}
DOMAINS = ("gpu", "cpu", "dram")
#: MLflow name (as mlflow.search_runs prefixes it) -> the zoo CSV's column; every name from green_mlops/names.py.
COLUMNS = {
    "params.arch": "arch", "params.batch_size": "batch_size",
    **{f"params.{names.param(p)}": p for p in ("total_params", "trainable_params", "buffer_bytes", "model_size_bytes",
                                                "macs", "flops")},
    f"metrics.{names.duration('fit')}": "train_time_s", f"metrics.{names.stage_energy('fit')}": "train_energy_J",
    f"metrics.{names.metric(names.ENERGY_PER_SAMPLE_TRAIN)}": "train_energy_per_sample_J",
    f"metrics.{names.duration('predict')}": "inference_time_s",
    f"metrics.{names.stage_energy('predict')}": "inference_energy_J",
    f"metrics.{names.metric(names.ENERGY_PER_SAMPLE_INFERENCE)}": "inference_energy_per_sample_J",
    **{f"metrics.{names.energy(d)}": f"train_{d}_J" for d in DOMAINS},  # per step: to the last training step
    f"metrics.{names.ENERGY_NET}": "train_net_J",
    **{f"metrics.{names.metric(m)}": m for m in ("macs_param", "work_done", "energy_scaling_factor",
                                                  "gpu_energy_scaling_factor", "model_size_to_ram")},
    **{f"tags.{names.method_tag(d)}": f"method_{d}" for d in DOMAINS}, f"tags.{names.hw_tag('gpu_names')}": "gpu",
}


def sweep(part: str, idle: float, samples: int) -> int:
    archs, batches = PARTS[part]
    cmd = [sys.executable, "-m", "green_mlops", "sweep", "--archs", archs, "--batch-sizes", batches,
           "--dataset", "synthetic", "--synthetic-samples", str(samples), "--epochs", "1",
           "--idle-seconds", str(idle), "--study", f"h100-{part}", "--storage", f"sqlite:///{OUT}/study.db",
           "--experiment", "h100-zoo", "--tracking-uri", f"sqlite:///{OUT}/mlflow.db", "--output",
           str(OUT / part), "--no-progress", "--accelerator", "gpu"]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def export(csv: Path) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{OUT}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["h100-zoo"], filter_string=f"tags.`{names.SWEEP_ROLE}` = 'trial'")
    df = runs[[c for c in COLUMNS if c in runs]].rename(columns=COLUMNS)
    for c in df.columns:
        if c not in ("arch", "gpu") and not c.startswith("method"):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df.sort_values(["arch", "batch_size"]).reset_index(drop=True)
    df.to_csv(csv, index=False)
    return df


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=[*PARTS, "csv"], required=True)
    p.add_argument("--idle", type=float, default=3.0, help="idle baseline seconds before each trial")
    p.add_argument("--samples", type=int, default=50_000, help="training and inference samples per trial")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.part != "csv":
        sys.exit(sweep(args.part, args.idle, args.samples))
    df = export(OUT / "h100_zoo.csv")
    show = df[["arch", "batch_size", "trainable_params", "macs", "train_time_s", "train_energy_J",
               "inference_time_s", "inference_energy_J", "train_energy_per_sample_J",
               "inference_energy_per_sample_J"]]
    print(show.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
