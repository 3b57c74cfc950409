"""The figures of docs/h100-reproduction.md's H200 section that `green-mlops report` does not print (issue #17).

Reads a merged zoo CSV (``benchmarks/zoo.py --merge``) and prints: the four findings on gross energy (the H100
section's basis, for the side-by-side); the Lasso's cross-validated R² over 20 seeds, over runs and with whole
architectures held out; how far the two runs of a repeated configuration differ; accuracy, idle power per device,
net shares and the training/inference time ratio; a per-architecture table (Markdown) of each run's accuracy and
net training energy per sample (round 0 / round 1)::

    PYTHONPATH=. python scripts/h200_zoo_extras.py /tmp/runs-r01.csv
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold

from green_mlops.analysis.analyse import analyse
from green_mlops.analysis.basis import GROSS_LABEL, Basis
from green_mlops.analysis.findings import check_findings
from green_mlops.analysis.paper_metrics import paper_metrics
from green_mlops.analysis.regression import EnergyPredictor
from green_mlops.analysis.runs import load_csv

SEEDS = range(20)
KEY = ["arch", "batch_size"]


def gross_findings(runs: pd.DataFrame) -> None:
    """The report's four findings, on gross energy instead of net."""
    gross = Basis(False, GROSS_LABEL)
    for f in check_findings(runs, paper_metrics(runs, "inference", gross), gross):
        print(f"- {f.claim}: {f.verdict}: {f.here}")


def _spread(label: str, values: list[float]) -> None:
    print(f"{label}: R² median {np.median(values):.3f}, {min(values):.3f}–{max(values):.3f} over {len(values)} seeds")


def leave_architectures_out(table: pd.DataFrame, target: str, seed: int) -> float:
    """R² of the predictor on runs of architectures it never saw (5 folds of whole architectures)."""
    pred = pd.Series(np.nan, index=table.index)
    for train, test in GroupKFold(5, shuffle=True, random_state=seed).split(table, groups=table["model"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = EnergyPredictor.fit(table.iloc[train], target=target, seed=seed)
        pred.iloc[test] = p.predict(table.iloc[test])
    return float(r2_score(pd.to_numeric(table[target]), pred))


def lasso(runs: pd.DataFrame) -> None:
    """The report's Lasso (net training energy per sample) refitted over seeds and subsets."""
    a = analyse(runs, with_figures=False)
    target, table = a.basis.per_sample("train"), a.table
    fits = [EnergyPredictor.fit(table, target=target, seed=s).summary for s in SEEDS]
    _spread(f"all {len(table)} runs, 5-fold over runs", [s.cv_r2 for s in fits])
    print(f"  MAE {np.median([s.cv_mae for s in fits]):.4f} J, MAPE {np.median([s.cv_mape for s in fits]):.0%}; "
          f"top feature {pd.Series([s.importances.index[0] for s in fits]).value_counts().to_dict()}")
    subsets = {"round 0 only": table[table["repeat"] == 0],
               "batch 128 only": table[pd.to_numeric(table["batch_size"]) == 128]}
    for name, sub in subsets.items():
        _spread(f"{name} ({len(sub)} runs), 5-fold over runs",
                [EnergyPredictor.fit(sub, target=target, seed=s).summary.cv_r2 for s in SEEDS])
    for name, sub in (("all runs", table), ("round 0 only", subsets["round 0 only"])):
        _spread(f"{name}, 5 folds of whole architectures", [leave_architectures_out(sub, target, s) for s in SEEDS])


def repeats(raw: pd.DataFrame) -> None:
    """How far the two runs of each configuration run in both rounds differ."""
    both = raw.groupby(KEY).filter(lambda g: g["round"].nunique() == 2)
    print(f"configurations with two runs: {both.groupby(KEY).ngroups}")
    for col in ("train_net_J_per_sample", "inference_net_J_per_sample", "train_J_per_sample", "train_time_s"):
        g = both.groupby(KEY)[col]
        rel = (g.max() - g.min()) / g.mean()
        print(f"  {col}: |difference| / mean: median {rel.median():.1%}, max {rel.max():.1%} at {rel.idxmax()}")
    acc = both.groupby(KEY)["accuracy"]
    d = acc.max() - acc.min()
    print(f"  accuracy |difference|: median {d.median():.4f}, max {d.max():.4f} at {d.idxmax()}")


def describe(raw: pd.DataFrame) -> None:
    """Accuracy, idle power per device, net shares, the time ratio at batch 128."""
    acc = raw.groupby("arch")["accuracy"].agg(["mean", "min", "max", "count"]).sort_values("mean")
    print(acc.round(4).to_string())
    lo, hi = raw["accuracy"].idxmin(), raw["accuracy"].idxmax()
    print(f"accuracy {raw.at[lo, 'accuracy']:.4f} ({raw.loc[lo, KEY].tolist()}) to {raw.at[hi, 'accuracy']:.4f} "
          f"({raw.loc[hi, KEY].tolist()})")
    print("idle power per device (W):")
    print(raw[["idle_gpu_W", "idle_cpu_W", "idle_dram_W", "idle_total_W"]].describe().round(2).to_string())
    for ph in ("train", "inference"):
        s = raw[f"{ph}_net_J"] / raw[f"{ph}_J"]
        print(f"{ph}: net / gross median {s.median():.0%}, {s.min():.0%}–{s.max():.0%}")
    gpu = raw["train_gpu_net_J"] / raw["train_net_J"]
    print(f"GPU share of net training energy: median {gpu.median():.0%} over runs")
    share = gpu.groupby(raw["arch"]).median().sort_values()
    print("GPU share of net training energy, median per architecture:", share.round(2).to_dict())
    print(f"DRAM net energy, largest |value|: {raw['train_dram_net_J'].abs().max():.2g} J")
    power = (raw["train_J"] / raw["train_time_s"]).groupby([raw["arch"], raw["batch_size"]]).mean().unstack()
    print("mean gross training power (W), mean over runs:")
    print(power.round(0).to_string())
    b = raw[raw["batch_size"] == 128]
    ratio = (b["train_time_s"] / b["train_samples"]) / (b["inference_time_s"] / b["inference_samples"])
    print("training / inference time per sample at batch 128:", ratio.groupby(b["arch"]).mean().sort_values()
          .round(2).to_dict())


def per_architecture(raw: pd.DataFrame) -> None:
    """Markdown: each run's accuracy and net training J/sample per batch size (round 0 / round 1)."""
    print("| model | accuracy bs 64 | bs 128 | bs 256 | net train J/sample bs 64 | bs 128 | bs 256 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arch, g in raw.groupby("arch"):
        by = {b: g[g["batch_size"] == b].sort_values("round") for b in (64, 128, 256)}
        acc = [" / ".join(f"{v:.3f}" for v in x["accuracy"]) for x in by.values()]
        e = [" / ".join(f"{v:.4f}" for v in x["train_net_J_per_sample"]) for x in by.values()]
        print(f"| {arch} | " + " | ".join(acc + e) + " |")


def main() -> None:
    """Print every section for the CSV given."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", help="merged zoo CSV (benchmarks/zoo.py --merge ... --out CSV)")
    args = ap.parse_args()
    raw, runs = pd.read_csv(args.csv), load_csv(args.csv)
    print(f"{len(runs)} runs; per round {raw.groupby('round').size().to_dict()}")
    for title, step in (("findings on gross energy", lambda: gross_findings(runs)), ("Lasso", lambda: lasso(runs)),
                        ("repeats", lambda: repeats(raw)), ("accuracy, idle, shares", lambda: describe(raw)),
                        ("per architecture", lambda: per_architecture(raw))):
        print(f"\n== {title} ==")
        step()


if __name__ == "__main__":
    main()
