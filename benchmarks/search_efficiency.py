"""Issue #20: does the energy-aware search find the grid's accuracy/energy front for a fraction of its energy?

Input: a REFERENCE GRID, the runs.csv that ``benchmarks/zoo.py --part grid`` writes (every architecture ×
batch size trained in full once; columns arch, batch_size, lr, momentum, weight_decay, dataset, accuracy,
train_J, inference_J_per_sample, inference_samples, steps, samples_seen, macs, trainable_params, ...).
From it: the grid's front (accuracy ↑, lifecycle energy = train_J + inference_J_per_sample × inference_samples ↓)
and the grid's energy (train_J + inference_J summed over its points: what running the grid cost).

Then the search (``green-mlops sweep --prune --predict-defer-margin M`` over the same space) per seed, and per
seed: the search's total energy (every trial: complete, pruned, failed) as a share of the grid's; the
hypervolume ratio of its front to the grid's; the grid front points it missed. Two modes, named in every output:

* live (default, GPU): real trainings with the grid's settings (dataset, one epoch, lr, momentum, weight decay),
  seed = the training seed. Energies are the search's own measurements.
* ``--replay`` (no GPU): each trial "runs" by returning the grid's recorded result; the pruner is told, every
  ``--prune-every`` of the epoch, the recorded FINAL accuracy and the training loop's energy ∝ steps (the grid
  holds no learning curve: its MLflow stores log validation accuracy once, at the end of the epoch). This is
  optimistic for pruning (it sees final accuracy at the first report, so the learned gain of ``--prune-margin
  auto`` is 0), so replay bounds what pruning can save; the predictor, ranking, deferral and front are the real
  code. Each report costs what a validation pass costs (inference energy per sample × ``val_samples``), counted
  in the search's energy and, as live, left out of the model's lifecycle energy. The seed picks the grid's round
  (seed mod rounds; a configuration the round lacks takes the first round's result) and shuffles the
  architectures' order; with one round seeds differ only there.

Hypervolume: 2-D, in (accuracy, log10 lifecycle J), reference point (the grid's lowest accuracy, log10 of 1.1 ×
its highest lifecycle energy); both fronts are scored with the same reference point. With the reference at the
lowest accuracy, the cheap end of the front dominates the score (on the H200 grid its four cheapest points alone
score 0.97), so each result also gives the ratio over the upper half of the accuracies (reference accuracy = the
grid's median) and how many grid front points the search found.

    python benchmarks/search_efficiency.py --grid results/h200/zoo/runs.csv --replay --seeds 0,1,2 --out DIR
    python benchmarks/search_efficiency.py --grid results/h200/zoo/runs.csv --seeds 0 --out $OUT   # GPU, per call
    python benchmarks/search_efficiency.py --merge DIR/seed-*.json --out DIR

A call that would outlast ``--budget-s`` stops before the trial that would not fit and exits with 3; the same
command with the same ``--out`` (its study.db and mlflow.db) resumes the seed, re-queuing that point. Trials stopped
this way show as FAIL rows ("interrupted") with 0 J in the ranking and are counted in ``budget_stops``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from green_mlops import names
from green_mlops.search import Objective, Sweep, SweepSettings, TrialContext, TrialResult, build_space, pareto_ranks
from green_mlops.search.margins import check_margin
from green_mlops.search.predict import check_defer_margin

KEY = ["arch", "batch_size"]
ZOO_INPUT = (3, 32, 32)  # the zoo's CIFAR-sized architectures, as benchmarks/zoo.py trains them on digits50k
NUMERIC = ["accuracy", "train_J", "inference_J_per_sample", "inference_samples", "steps", "samples_seen", "macs",
           "trainable_params", "model_size_bytes", "lr", "momentum", "weight_decay", "train_samples", "val_samples",
           "round", "train_time_s", "inference_time_s"]


# -- the reference grid ----------------------------------------------------------------------------------------
def load_grid(path: str | Path, round_: int | None = None) -> pd.DataFrame:
    """One row per (arch, batch size): a round's result (``round_``) or the median over rounds; lifecycle added."""
    df = pd.read_csv(path)
    missing = [c for c in ["arch", "batch_size", "accuracy", "train_J", "inference_J_per_sample"] if c not in df]
    if missing:
        raise SystemExit(f"{path} lacks column(s) {', '.join(missing)}: give the runs.csv of benchmarks/zoo.py")
    if "part" in df:
        df = df[df["part"].fillna("grid") == "grid"]
    if "status" in df:
        df = df[df["status"].fillna("ok").isin(["ok", "completed", "FINISHED"])]
    for c in NUMERIC:
        if c in df:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df = df.dropna(subset=["accuracy", "train_J"])
    if round_ is not None and "round" in df and df["round"].nunique() > 1:
        rounds = sorted(df["round"].unique())
        pick = df[df["round"] == rounds[round_ % len(rounds)]]
        lacking = ~df.set_index(KEY).index.isin(pick.set_index(KEY).index) & (df["round"] == rounds[0]).to_numpy()
        df = pd.concat([pick, df[lacking]])
    agg = {c: "median" for c in NUMERIC if c in df and c not in KEY}
    agg.update({c: "first" for c in ("dataset", "method_gpu") if c in df})
    g = df.groupby(KEY, as_index=False).agg(agg)
    if "inference_samples" not in g:
        g["inference_samples"] = 0
    g["inference_J"] = g["inference_J_per_sample"].fillna(0) * g["inference_samples"].fillna(0)
    g["lifecycle_J"] = g["train_J"] + g["inference_J"]
    g["pareto_rank"] = pareto_ranks(g["accuracy"].to_numpy(float), g["lifecycle_J"].to_numpy(float))
    if len(g) == 0:
        raise SystemExit(f"{path} has no finished grid rows")
    return g


def hypervolume(acc: np.ndarray, energy_J: np.ndarray, ref: tuple[float, float]) -> float:
    """2-D hypervolume (accuracy ↑, log10 energy ↓) dominated by the points, bounded by ``ref`` (acc, J)."""
    ref_acc, ref_log = ref[0], math.log10(ref[1])
    pts = sorted((math.log10(e), a) for a, e in zip(acc, energy_J) if a > ref_acc and 0 < e and math.log10(e) < ref_log)
    hv, best = 0.0, ref_acc
    for log_e, a in pts:  # cheapest first; each point adds the accuracy it gains over every cheaper one
        if a > best:
            hv += (a - best) * (ref_log - log_e)
            best = a
    return hv


# -- the search ------------------------------------------------------------------------------------------------
class ReplayRunner:
    """A trial runner that returns the grid's recorded result, reporting every ``every`` of the epoch.

    Each report but the epoch's last is an extra validation pass, charged at the grid's inference energy per
    sample × its ``val_samples`` (0 when the grid does not record them): in the trial's energy, and in
    ``overhead_J`` so that, as live, it counts in the search's cost and not in the model's lifecycle."""

    def __init__(self, grid: pd.DataFrame, every: float = 0.25) -> None:
        self.rows = {(r["arch"], int(r["batch_size"])): r for r in grid.to_dict("records")}
        self.reports = max(1, round(1 / every))
        self._acts: dict[str, int | None] = {}

    def features(self, params: dict[str, Any]) -> dict[str, Any]:
        """The grid's model characteristics, and the zoo model's activation elements (the search's cost proxy)
        where the grid lacks them and the zoo has the architecture, as the live runner would compute them."""
        r = self.rows[(params["arch"], int(params["batch_size"]))]
        out = {k: r[k] for k in ("macs", "trainable_params", "model_size_bytes", names.ACTIVATION_ELEMENTS)
               if k in r and pd.notna(r[k])}
        if names.ACTIVATION_ELEMENTS not in out:
            acts = self._activations(str(params["arch"]))
            out.update({names.ACTIVATION_ELEMENTS: acts} if acts else {})
        return out

    def _activations(self, arch: str) -> int | None:
        if arch not in self._acts:
            import torch

            from green_mlops.metrics.model_stats import activation_elements
            from green_mlops.training.train import build_model
            from green_mlops.training.zoo import available_models

            self._acts[arch] = (activation_elements(build_model(arch, 10), torch.zeros(1, *ZOO_INPUT))
                                if arch in available_models() else None)
        return self._acts[arch]

    def __call__(self, ctx: TrialContext) -> TrialResult:
        r = self.rows[(ctx.params["arch"], int(ctx.params["batch_size"]))]
        steps = int(r.get("steps") or 100)
        n_inf, n_val = int(r.get("inference_samples") or 0), r.get("val_samples")
        n_val = int(n_val) if n_val is not None and pd.notna(n_val) else None
        val_J = float(r["inference_J_per_sample"]) * n_val if n_val else 0.0
        loop_J = float(r["train_J"]) - val_J  # the recorded fit holds the epoch's one validation
        method = {"replay": "recorded in the reference grid"}
        for k in range(1, self.reports):
            step = max(1, steps * k // self.reports)
            if ctx.report(step, steps, float(r["accuracy"]), loop_J * step / steps,
                          inference_J_per_sample=float(r["inference_J_per_sample"]) if n_val else None):
                return TrialResult(float(r["accuracy"]), loop_J * step / steps + k * val_J, None, n_inf, steps=step,
                                   methods=method, notes=[f"replay: stopped at step {step} of {steps}"],
                                   overhead_J=k * val_J, accuracy_samples=n_val)
        extra = (self.reports - 1) * val_J
        return TrialResult(float(r["accuracy"]), float(r["train_J"]) + extra, float(r["inference_J_per_sample"]),
                           n_inf, steps=steps, methods=method, overhead_J=extra, accuracy_samples=n_val)


class BudgetReached(KeyboardInterrupt):
    """The next trial would end past ``--budget-s``: the sweep stops (its trial is marked failed, and re-queued
    when the same command runs again with the same ``--out``)."""


STOPPED = "interrupted (Ctrl-C)"  # the sweep's error text for a trial stopped by an interrupt (BudgetReached is one)


class Budgeted:
    """Runs a trial only if its expected time (the grid's recorded time × 1.3 + 20 s) fits in what is left.

    In replay, trials take no time: the recorded time is added to a virtual clock, so the rule is the same.
    ``clock`` ({"start": monotonic time, "virtual": s}) is shared by every seed of the call: one budget per call."""

    def __init__(self, runner: Any, grid: pd.DataFrame, budget_s: float, replay: bool, clock: dict[str, float]) -> None:
        self.runner, self.replay, self.budget_s, self.clock = runner, replay, budget_s, clock
        t = grid.get("train_time_s", pd.Series(0.0, index=grid.index)).fillna(0) + \
            grid.get("inference_time_s", pd.Series(0.0, index=grid.index)).fillna(0)
        self.expected = {(a, int(b)): float(x) * 1.3 + 20 for a, b, x in zip(grid["arch"], grid["batch_size"], t)}
        self.features = runner.features

    def __call__(self, ctx: TrialContext) -> TrialResult:
        need = self.expected.get((ctx.params["arch"], int(ctx.params["batch_size"])), 60.0)
        used = (time.monotonic() - self.clock["start"]) + self.clock["virtual"]
        if used + need > self.budget_s:
            raise BudgetReached(f"{used:.0f} s used, this trial needs ~{need:.0f} s of the {self.budget_s:.0f} s budget")
        if self.replay:
            self.clock["virtual"] += need
        return self.runner(ctx)


def requeue_stopped(storage: str, study_name: str) -> int:
    """Queue again the points whose trials an earlier call stopped at its budget; how many."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return 0
    done = {(t.params.get("arch"), t.params.get("batch_size")) for t in study.trials
            if t.state.name in ("COMPLETE", "PRUNED", "WAITING", "RUNNING")}
    again = [t.params for t in study.trials if t.state.name == "FAIL" and t.user_attrs.get("error") == STOPPED
             and (t.params.get("arch"), t.params.get("batch_size")) not in done]
    for params in again:
        study.enqueue_trial(params)
    return len(again)


def live_runner(grid: pd.DataFrame, seed: int, accelerator: str, max_steps: int | None) -> Any:
    """The sweep's own runner with the grid's training settings (real trainings)."""
    from green_mlops.commands.sweep import TrainingRunner
    from green_mlops.training import TrainConfig
    from green_mlops.training.data import load_data

    first = grid.iloc[0]
    sizes = {k: int(first[k]) for k in ("train_samples", "val_samples") if pd.notna(first.get(k))}
    options = sizes if first.get("dataset") in ("digits50k", "synthetic") else {}
    base = TrainConfig(arch=first["arch"], batch_size=int(first["batch_size"]), lr=float(first.get("lr", 0.001)),
                       momentum=float(first.get("momentum", 0.0) or 0.0),
                       weight_decay=float(first.get("weight_decay", 5e-4) or 5e-4), epochs=1,
                       dataset=str(first.get("dataset", "digits")), seed=seed, accelerator=accelerator,
                       max_steps=max_steps, data_options=options).validate()
    # the grid's data (benchmarks/zoo.py builds it with seed 0 for every round); the seed is the training's
    return TrainingRunner(base, load_data(base.dataset, seed=0, **options))


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One search over the grid's space; what it cost and found, beside the grid."""
    mode = "replay" if args.replay else "live"
    grid = load_grid(args.grid, seed if args.replay else None)
    archs = sorted(grid["arch"].unique())
    random.Random(seed).shuffle(archs)
    space = build_space(",".join(archs), ",".join(str(int(b)) for b in sorted(grid["batch_size"].unique())),
                        lrs=str(float(grid["lr"].iloc[0])) if "lr" in grid else None)
    out = Path(args.out) / f"seed-{seed}-{mode}"
    out.mkdir(parents=True, exist_ok=True)
    runner = ReplayRunner(grid, 1.0 if args.no_prune else args.prune_every) if args.replay else live_runner(grid, seed, args.accelerator,
                                                                                      args.max_steps)
    n_inf = int(grid["inference_samples"].median()) if grid["inference_samples"].notna().any() else None
    settings = SweepSettings(study=f"search-efficiency-{mode}-{seed}", storage=f"sqlite:///{out}/study.db",
                             experiment=f"search-efficiency-{mode}", tracking_uri=f"sqlite:///{out}/mlflow.db",
                             objective=Objective("pareto", n_inf), seed=seed, output_dir=out, progress=False,
                             prune=not args.no_prune, prune_margin=args.prune_margin, prune_every=args.prune_every,
                             defer_margin=args.defer_margin, run_params={"benchmark_mode": mode})
    t0 = time.time()
    requeued = requeue_stopped(settings.storage, settings.study)
    if args.budget_s:
        runner = Budgeted(runner, grid, args.budget_s, args.replay, args.clock)
    sweep = Sweep(space, settings, runner, stream=sys.stderr)
    try:
        report = sweep.run()
    except BudgetReached as exc:
        print(f"seed {seed} ({mode}) stopped at the budget ({exc}); run the same command with the same --out to "
              f"resume it", file=sys.stderr, flush=True)
        return {"mode": mode, "seed": seed, "incomplete": True, "out": str(out)}
    table = report.table
    front = table[table["pareto_rank"] == 1]
    gfront = grid[grid["pareto_rank"] == 1]
    ref = (float(grid["accuracy"].min()), 1.1 * float(grid["lifecycle_J"].max()))
    hv_grid = hypervolume(gfront["accuracy"].to_numpy(float), gfront["lifecycle_J"].to_numpy(float), ref)
    hv = hypervolume(front["accuracy"].to_numpy(float), front["lifecycle_J"].to_numpy(float), ref)
    upper = (float(grid["accuracy"].median()), ref[1])  # the upper half of the accuracies only: a stricter score
    hv_upper = [hypervolume(f["accuracy"].to_numpy(float), f["lifecycle_J"].to_numpy(float), upper) for f in (gfront, front)]
    found = {(a, int(b)) for a, b in zip(front["arch"], front["batch_size"])}
    states: dict[tuple[str, int], str] = {}
    for a, b, st in zip(table["arch"], table["batch_size"], table["state"]):  # a point stopped and rerun: its rerun
        states[(a, int(b))] = st if st != "FAIL" else states.get((a, int(b)), st)
    grid_J = float(grid["train_J"].sum() + grid["inference_J"].sum())
    return {"mode": mode, "seed": seed, "grid": str(args.grid), "grid_points": len(grid), "grid_energy_J": grid_J,
            "grid_front": [f"{a}/{int(b)}" for a, b in zip(gfront["arch"], gfront["batch_size"])],
            "search_energy_J": report.cost.total_J, "energy_share": report.cost.total_J / grid_J,
            "hypervolume_grid": hv_grid, "hypervolume_search": hv, "hypervolume_ratio": hv / hv_grid if hv_grid else None,
            "hypervolume_ratio_upper_half": hv_upper[1] / hv_upper[0] if hv_upper[0] else None,
            "missed": [f"{a}/{int(b)} ({states.get((a, int(b)), 'not tried')})" for a, b in
                       zip(gfront["arch"], gfront["batch_size"]) if (a, int(b)) not in found],
            "search_front": front[["arch", "batch_size", "accuracy", "lifecycle_J"]].to_dict("records"),
            "cost": report.cost.metrics(), "settings": {"prune": not args.no_prune, "prune_margin": args.prune_margin,
                                                        "prune_every": args.prune_every,
                                                        "defer_margin": args.defer_margin},
            "budget_stops": int((table["note"] == STOPPED).sum()), "requeued_this_call": requeued,
            "wall_s": time.time() - t0, "ranking": str(report.csv_path), "host": os.uname().nodename,
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


# -- output ----------------------------------------------------------------------------------------------------
def summarise(results: list[dict[str, Any]], grid: pd.DataFrame, out: Path) -> str:
    """The per-seed table (printed last) and a plot of both fronts."""
    rows = [{"mode": r["mode"], "seed": r["seed"], "pruning": "on" if r["settings"].get("prune", True) else "off",
             "deferred": int(r["cost"].get("search/trials_deferred", 0)), "energy share of grid": f"{r['energy_share']:.1%}",
             "search J": f"{r['search_energy_J']:.4g}", "grid J": f"{r['grid_energy_J']:.4g}",
             "hypervolume ratio": f"{r['hypervolume_ratio']:.3f}" if r["hypervolume_ratio"] is not None else "-",
             "upper-half ratio": f"{r['hypervolume_ratio_upper_half']:.3f}" if r.get("hypervolume_ratio_upper_half")
             is not None else "-", "front found": f"{len(r['grid_front']) - len(r['missed'])}/{len(r['grid_front'])}",
             "missed front points": ", ".join(r["missed"]) or "none"} for r in results]
    plot_fronts(results, grid, out / "search_efficiency_fronts.png")
    target = "target (issue #20): hypervolume ratio ≥ 0.95 at ≤ 25 % of the grid's energy"
    return f"{pd.DataFrame(rows).to_string(index=False)}\n{target}\nplot: {out / 'search_efficiency_fronts.png'}"


def plot_fronts(results: list[dict[str, Any]], grid: pd.DataFrame, path: Path) -> Path:
    """Grid front (black) and each seed's search front, energy on a log axis; matplotlib's object API."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(grid["lifecycle_J"], grid["accuracy"], c="lightgrey", s=18, label="grid point")
    gf = grid[grid["pareto_rank"] == 1].sort_values("lifecycle_J")
    ax.step(gf["lifecycle_J"], gf["accuracy"], where="post", c="black", lw=2, label="grid front")
    for r in results:
        f = pd.DataFrame(r["search_front"]).sort_values("lifecycle_J")
        if len(f):
            ax.step(f["lifecycle_J"], f["accuracy"], where="post", marker="o", ms=4, alpha=0.8,
                    label=f"search ({r['mode']}) seed {r['seed']}: {r['energy_share']:.0%} of grid energy")
    ax.set_xscale("log")
    ax.set_xlabel("lifecycle energy (J): training + inference of the inference set")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("energy-aware search vs the full grid")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--grid", help="the reference grid: runs.csv of benchmarks/zoo.py --part grid")
    p.add_argument("--replay", action="store_true", help="no training: replay the grid's recorded results")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds of this call")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="no search: summarise seed-*.json of earlier calls")
    p.add_argument("--no-prune", action="store_true", help="the predictor alone (an ablation)")
    p.add_argument("--prune-margin", default="auto", help="the pruner's accuracy margin: auto (learned from the "
                   "study's curves, ties within the validation set's noise: docs/search.md) or a fixed gain")
    p.add_argument("--prune-every", type=float, default=0.25, help="validate and report every this fraction of "
                   "an epoch (live mode)")
    p.add_argument("--defer-margin", default="auto", help="relative energy margin of a deferral: auto (the "
                   "prediction's own uncertainty) or a number ≥ 0")
    p.add_argument("--accelerator", default="gpu", help="live mode: Lightning accelerator")
    p.add_argument("--max-steps", type=int, default=None, help="live mode: cap steps per trial (smoke runs only)")
    p.add_argument("--budget-s", type=float, default=None, help="stop before a trial that would end past this many "
                   "seconds (its expected time: the grid's × 1.3 + 20 s); rerun with the same --out to resume")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="output folder ($OUT)")
    args = p.parse_args(argv)
    args.clock = {"start": time.monotonic(), "virtual": 0.0}  # --budget-s covers the whole call, every seed
    if not args.merge and not args.grid:
        p.error("give --grid runs.csv (or --merge seed-*.json)")
    try:
        args.prune_margin = "auto" if check_margin(args.prune_margin) is None else float(args.prune_margin)
        args.defer_margin = check_defer_margin(args.defer_margin)
    except ValueError as exc:
        p.error(str(exc))
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds takes whole numbers, e.g. 0,1,2; got {args.seeds!r}")
    if args.grid and not Path(args.grid).is_file():
        p.error(f"no reference grid at {args.grid}: run benchmarks/zoo.py --part grid, then --merge its CSVs")
    if not args.replay and not args.merge and args.accelerator == "gpu":
        import torch

        if not torch.cuda.is_available():
            p.error("live mode trains on the GPU and none is visible: use --replay, or --accelerator cpu")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        results = [json.loads(Path(f).read_text()) for f in args.merge]
    else:
        results = []
        for seed in args.seed_list:
            r = run_seed(args, seed)
            if r.get("incomplete"):
                break
            (out / f"seed-{seed}-{r['mode']}.json").write_text(json.dumps(r, indent=1, default=str))
            results.append(r)
        if not results:
            return 3
    grid = load_grid(results[0]["grid"] if args.merge else args.grid)
    (out / "search_efficiency.json").write_text(json.dumps(results, indent=1, default=str))
    print(summarise(results, grid, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
