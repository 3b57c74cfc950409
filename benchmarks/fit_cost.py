"""What EnergyCallback adds to a fit in CPU-seconds, fixed and per step, and in time at the fit's end (issue #16).

Each fit runs in a fresh Python process (as one trial of a search launched by a script would), training a
small MLP on scikit-learn's digits under Lightning on the CPU, with an ``MLFlowLogger`` on a SQLite store
in both arms:

  bare     the logger only (Lightning logs ``train_loss`` every 50 steps)
  energy   the same, plus ``EnergyCallback()`` logging every step

at 500 and 2,500 optimiser steps, in interleaved rounds whose order alternates (ABBA) so drift cancels.
The CPU of a fit is the whole process tree's: the parent reads the child's ``wait4`` resource usage,
which covers every thread and every process it started and waited for (the metric delivery process).
What the callback adds at each length is the median over rounds of energy − bare within a round (paired,
so load that drifts between rounds cancels); the line through the shortest and longest fit gives the
fixed part (intercept: start-up, model statistics, artifacts, the delivery process) and the part per
logged step (slope). "cold" is a process's first fit: the whole tree from interpreter start to exit, less
any later fits, so imports count. ``--fits 2`` (the default) also runs a second fit in the same process
("warm": imports done, as in an in-process search), split into the training process and the rest (the
delivery process, reaped at the fit's end).

Inside the energy arm, probe callbacks around ``EnergyCallback`` split its own hooks' CPU (set-up, the
first batch's model statistics, tear-down) and the fit-end time: from the last step's end to ``fit()``
returning, whose difference between arms is the time added to the end of a fit.

    PYTHONPATH=. python benchmarks/fit_cost.py [--rounds 3] [--steps 500,2500] [--fits 2]
    PYTHONPATH=. python benchmarks/fit_cost.py --rounds 1 --steps 20,60 --fits 1   # smoke run

Prints the table last; writes details to $OUT/fit_cost.json (default ``bench_out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ARMS = ("bare", "energy")
HOOK_NOTES = {"teardown_cpu_s": " (with the delivery process's whole CPU: it is reaped there)"}
BATCH = 32


def cpu_now() -> float:
    """CPU-seconds of this process (all threads) and of its children that have been waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _self_cpu() -> float:
    """CPU-seconds of this process alone (all its threads)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


# -- the child: one process, ``fits`` fits of one arm -------------------------------------------------------
def child(arm: str, steps: int, fits: int, workdir: Path) -> dict[str, Any]:
    """Run the fits and return per-fit CPU, phases and fit-end time (the parent adds the whole tree's CPU)."""
    t_import = cpu_now()
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import MLFlowLogger
    from sklearn.datasets import load_digits
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)  # both arms alike; two cores are shared with the process tree's helpers

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
            self.example_input_array = torch.zeros(1, 64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    class Probe(pl.Callback):
        """Reads the clock and CPU at hooks; placed on both sides of EnergyCallback to bracket its work."""

        def __init__(self) -> None:
            self.at: dict[str, float] = {}
            self.last_step_end = 0.0

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            self.at["setup"] = cpu_now()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == 0:
                self.at["first_batch"] = cpu_now()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.last_step_end = time.perf_counter()

        def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
            self.at["teardown"] = cpu_now()

    x, y = load_digits(return_X_y=True)
    data = TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.long))
    rows = []
    t_ready = cpu_now()
    for i in range(fits):
        before, after = Probe(), Probe()
        callbacks: list[Any] = [before, after]
        if arm == "energy":
            from green_mlops.lightning import EnergyCallback

            callbacks = [before, EnergyCallback(), after]
        logger = MLFlowLogger(experiment_name=f"fit-cost-{arm}", tracking_uri=f"sqlite:///{workdir}/mlflow.db",
                              artifact_location=str(workdir / "artifacts"))
        trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
                             enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                             num_sanity_val_steps=0, default_root_dir=str(workdir))
        loader = DataLoader(data, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(i))
        c0, s0, w0 = cpu_now(), _self_cpu(), time.perf_counter()
        trainer.fit(MLP(), loader)
        w1, c1, s1 = time.perf_counter(), cpu_now(), _self_cpu()
        assert trainer.global_step == steps, trainer.global_step
        rows.append({"fit": i, "cpu_s": c1 - c0, "self_cpu_s": s1 - s0, "wall_s": w1 - w0, "fit_end_s": w1 - after.last_step_end,
                     "setup_cpu_s": after.at["setup"] - before.at["setup"],
                     "first_batch_cpu_s": after.at["first_batch"] - before.at["first_batch"],
                     "teardown_cpu_s": after.at["teardown"] - before.at["teardown"]})
    return {"arm": arm, "steps": steps, "import_cpu_s": t_ready - t_import, "fits": rows}


# -- the parent: interleaved child processes, whole-tree CPU from wait4 -------------------------------------
def run_child(arm: str, steps: int, fits: int, root: Path) -> dict[str, Any]:
    """One child process; its JSON plus the CPU of its whole tree, from interpreter start to exit."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{arm}{steps}_", dir=root))
    out = workdir / "child.json"
    cmd = [sys.executable, __file__, "--child", arm, "--steps", str(steps), "--fits", str(fits),
           "--workdir", str(workdir), "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    w0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{arm} fit of {steps} steps failed (exit {proc.returncode}):\n{err.decode()[-3000:]}")
    row = json.loads(out.read_text())
    row["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    row["process_wall_s"] = time.perf_counter() - w0
    row["max_rss_MB"] = usage.ru_maxrss / 1024
    return row


MEASURES = {  # what each figure is, per child process row
    "cold": "a process's first fit: its whole tree from interpreter start to exit, less the later fits",
    "warm": "a later fit in the same process: training process and delivery process",
    "warm_training_process": "the same fits, the training process alone (all its threads)",
}


def _value(measure: str, r: dict[str, Any]) -> float:
    later = r["fits"][1:]
    if measure == "cold":
        return r["process_cpu_s"] - sum(f["cpu_s"] for f in later)
    key = "cpu_s" if measure == "warm" else "self_cpu_s"
    return statistics.median(f[key] for f in later)


def added(rows: list[dict[str, Any]], measure: str) -> dict[int, float]:
    """Per fit length: the median over rounds of energy − bare in the same round (paired, so load drift cancels)."""
    cells = {(r["round"], r["arm"], r["steps"]): _value(measure, r) for r in rows}
    out = {}
    for n in sorted({r["steps"] for r in rows}):
        diffs = [cells[(rd, "energy", n)] - cells[(rd, "bare", n)] for rd in sorted({r["round"] for r in rows})
                 if (rd, "energy", n) in cells and (rd, "bare", n) in cells]
        if diffs:
            out[n] = statistics.median(diffs)
    return out


def summarise(rows: list[dict[str, Any]], fits: int) -> dict[str, Any]:
    """Per measure: CPU added at each length, and the line through the shortest and longest (fixed, per step)."""
    out: dict[str, Any] = {}
    for measure in MEASURES if fits > 1 else ["cold"]:
        at = added(rows, measure)
        lo, hi = min(at), max(at)
        slope = (at[hi] - at[lo]) / (hi - lo)
        out[measure] = {"added_cpu_s_at_steps": at, "fixed_added_cpu_s": at[lo] - slope * lo,
                        "per_step_added_cpu_ms": 1000 * slope}
    ends = {arm: statistics.median(f["fit_end_s"] for r in rows if r["arm"] == arm for f in r["fits"]) for arm in ARMS}
    out["fit_end_s"] = ends
    out["fit_end_added_s"] = ends["energy"] - ends["bare"]
    energy = [f for r in rows if r["arm"] == "energy" for f in r["fits"]]
    bare = [f for r in rows if r["arm"] == "bare" for f in r["fits"]]
    out["hooks_cpu_s"] = {k: statistics.median(f[k] for f in energy) - statistics.median(f[k] for f in bare)
                          for k in ("setup_cpu_s", "first_batch_cpu_s", "teardown_cpu_s")}
    return out


def table(s: dict[str, Any]) -> str:
    """Markdown: what the callback adds (energy − bare, paired by round)."""
    lengths = sorted(next(v for k, v in s.items() if k in MEASURES)["added_cpu_s_at_steps"])
    lines = ["| CPU the callback adds (energy − bare, median of rounds) | "
             + " | ".join(f"{n} steps, CPU-s" for n in lengths) + " | fixed, CPU-s | per step, CPU ms |",
             "|" + " --- |" * (len(lengths) + 3)]
    for name in MEASURES:
        if name in s:
            m = s[name]
            lines.append(f"| {name}: {MEASURES[name]} | "
                         + " | ".join(f"{m['added_cpu_s_at_steps'][n]:+.2f}" for n in lengths)
                         + f" | **{m['fixed_added_cpu_s']:+.2f}** | **{m['per_step_added_cpu_ms']:+.2f}** |")
    blank = " |" * (len(lengths) + 1)
    lines.append(f"| fit end, s: last step to fit() returning (bare {s['fit_end_s']['bare']:.3f}, "
                 f"energy {s['fit_end_s']['energy']:.3f}) |{blank} **{s['fit_end_added_s']:+.3f}** |")
    for k, v in s["hooks_cpu_s"].items():
        lines.append(f"| callback's {k.replace('_cpu_s', '')} hook, CPU-s{HOOK_NOTES.get(k, '')} |{blank} {v:+.3f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--steps", default="500,2500", help="fit lengths in optimiser steps (default 500,2500)")
    p.add_argument("--fits", type=int, default=2, help="fits per process: 1 cold, more adds warm figures (default 2)")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="folder for fit_cost.json ($OUT)")
    p.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.steps = sorted({int(s) for s in str(args.steps).split(",") if s.strip()})
    except ValueError:
        p.error(f"--steps takes whole numbers separated by commas, e.g. 500,2500; got {args.steps!r}")
    if args.child is None and (len(args.steps) < 2 or args.steps[0] < 1):
        p.error("--steps needs two or more lengths ≥ 1 (the slope between them is the per-step cost)")
    if args.rounds < 1 or args.fits < 1:
        p.error("--rounds and --fits must be ≥ 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        Path(args.json).write_text(json.dumps(child(args.child, args.steps[0], args.fits, Path(args.workdir))))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = [(arm, n) for n in args.steps for arm in ARMS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="fit_cost_") as root:
        for r in range(args.rounds):
            for arm, n in (cells if r % 2 == 0 else cells[::-1]):
                row = run_child(arm, n, args.fits, Path(root))
                row["round"] = r
                rows.append(row)
                print(f"round {r} {arm:6s} {n:5d} steps: tree {row['process_cpu_s']:.2f} CPU-s, "
                      f"fit end {row['fits'][0]['fit_end_s']:.3f} s", flush=True)
    summary = summarise(rows, args.fits)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "args": {k: v for k, v in vars(args).items()
                                                                                      if k not in ("child", "workdir", "json")},
              "summary": summary, "details": rows}
    (out / "fit_cost.json").write_text(json.dumps(report, indent=2))
    print(table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
