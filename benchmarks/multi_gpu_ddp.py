"""Lightning DDP over every visible GPU with the EnergyCallback, checked against each GPU's NVML counter (issue #8).

The workload of ``benchmarks/workload.py`` (torchvision ResNet18, CIFAR-shaped random batches of 128
per GPU, SGD) trained with ``strategy="ddp"``, one process per GPU. Each round runs two fits in an
order that alternates (A B, B A, ...), so slow drifts cancel in the paired ratio:

  bare    no logger, no callback
  energy  EnergyCallback logging every step to an MLFlowLogger on a SQLite store under $OUT

What the energy fits check, on rank 0:

- every GPU metered by exactly one rank (each rank meters its own GPU; CPU and DRAM on local rank 0);
- each GPU's energy as the callback reports it (from the rank that meters it, gathered onto rank 0)
  against that GPU's NVML energy counter (``nvmlDeviceGetTotalEnergyConsumption``) read by rank 0
  right after the callback's meter started and right before it stopped (target: within 1 %);
- the run's total ``energy/fit_J`` (reduced over ranks) against the sum of the ranks' own totals and
  against the counters plus the host's CPU and DRAM (which only the callback meters);
- what rank 0's MLflow run holds: ``energy/fit_J``, ``energy/gpu_J`` and the ``power/gpu{i}_W`` keys.

And the throughput (global optimiser steps per second, timed on rank 0 after warm-up) of energy
against bare: the median of the per-round ratios with a bootstrap 95 % CI (target ≥ 0.99).

    python3 benchmarks/multi_gpu_ddp.py                                               # every visible GPU
    python3 benchmarks/multi_gpu_ddp.py --accelerator cpu --devices 2 --steps 5 --rounds 1   # CPU smoke (gloo)

Lightning's DDP launcher runs this script again for ranks 1..n-1 (same arguments); only rank 0
prints the table (last) and writes $OUT/multi_gpu_ddp.json (default folder ``bench_out``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from benchmarks.overhead import median_ci, round_order, verdict  # noqa: E402
from benchmarks.workload import BatchPool, ResNet18, Timer, on_cuda, prepare, wait_for_writers  # noqa: E402

TARGET_ERROR_PCT = 1.0  # issue #8: each GPU within 1 % of its counter
KINDS = ["bare", "energy"]


def is_rank_zero() -> bool:
    """True in the launching process; Lightning starts ranks 1..n-1 with LOCAL_RANK set."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


class GpuCounters:
    """NVML energy counters (J) of every GPU this process sees, indexed as torch indexes them."""

    def __init__(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        nvml_by_uuid = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            nvml_by_uuid[(uuid.decode() if isinstance(uuid, bytes) else uuid).removeprefix("GPU-")] = (i, h)
        self.handles: list[Any] = []
        self.nvml_index: list[int] = []
        for t in range(torch.cuda.device_count()):  # torch's index is not NVML's under CUDA_VISIBLE_DEVICES
            uuid = str(getattr(torch.cuda.get_device_properties(t), "uuid", "")).removeprefix("GPU-")
            i, h = nvml_by_uuid.get(uuid, (t, pynvml.nvmlDeviceGetHandleByIndex(t)))
            self.nvml_index.append(i)
            self.handles.append(h)

    @classmethod
    def open(cls, accelerator: str) -> GpuCounters | None:
        return cls() if on_cuda(accelerator) else None

    def read_J(self) -> list[float]:
        return [self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0 for h in self.handles]


class CountersProbe(pl.Callback):
    """Reads every GPU's counter at ``setup`` or at ``teardown`` (placed after / before the EnergyCallback
    in the list, so the two reads bracket the callback's own meter window)."""

    def __init__(self, counters: GpuCounters | None, hook: str) -> None:
        self.counters, self.hook = counters, hook
        self.reads: list[float] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.hook == "setup" and self.counters is not None:
            self.reads = self.counters.read_J()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.hook == "teardown" and self.counters is not None:
            self.reads = self.counters.read_J()


class RankGather(pl.Callback):
    """After the EnergyCallback's teardown: every rank's local energy summary and counter reads, gathered."""

    def __init__(self, energy: pl.Callback, start: CountersProbe, stop: CountersProbe) -> None:
        self.energy, self.start, self.stop = energy, start, stop
        self.ranks: list[dict[str, Any]] = []

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        local = self.energy.summary.get("local") or {}
        root = trainer.strategy.root_device
        mine = {"rank": trainer.global_rank, "device": str(root),
                "sources": {s["name"]: {"energy_J": s["energy_J"], "provenance": s["provenance"],
                                        "method": s["method"]} for s in local.get("sources", [])},
                "local_total_J": local.get("total_J", 0.0),
                "counter_start_J": self.start.reads, "counter_stop_J": self.stop.reads}
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, mine)
            self.ranks = sorted(gathered, key=lambda r: r["rank"])
        else:
            self.ranks = [mine]


def agree(flag: bool) -> bool:
    """Rank 0's decision, the same on every rank (a rank that stopped alone would hang the others)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        box = [flag]
        torch.distributed.broadcast_object_list(box, src=0)
        return bool(box[0])
    return flag


def trainer(args: argparse.Namespace, steps: int, callbacks: list[pl.Callback], logger: Any) -> pl.Trainer:
    return pl.Trainer(accelerator=args.accelerator, devices=args.devices, strategy="ddp", max_steps=steps,
                      logger=logger, callbacks=callbacks, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, log_every_n_steps=1, num_sanity_val_steps=0,
                      use_distributed_sampler=False, default_root_dir=str(args.out))


def loader(args: argparse.Namespace, steps: int) -> DataLoader:
    """Each rank's own ready-made batches (no sampler: the data path must cost nothing)."""
    return DataLoader(BatchPool(16, args.batch_size, steps + 10, pin=on_cuda(args.accelerator)),
                      batch_size=None, num_workers=0)


def one_fit(kind: str, args: argparse.Namespace, counters: GpuCounters | None) -> dict[str, Any]:
    """One timed fit; for ``energy``, the callback's figures against the counters (filled on rank 0)."""
    from pytorch_lightning.loggers import MLFlowLogger

    from green_mlops.lightning import EnergyCallback

    cuda = on_cuda(args.accelerator)
    logger: Any = False
    callbacks: list[pl.Callback] = []
    timer = Timer(args.warmup, args.steps, cuda)
    cb = gather = None
    out = Path(args.out).resolve()
    uri = f"sqlite:///{out / 'mlflow.db'}"
    if kind == "energy":
        if is_rank_zero():  # only rank 0 logs; other ranks must not open the SQLite store at the same time
            logger = MLFlowLogger(experiment_name="multi-gpu-ddp", tracking_uri=uri,
                                  artifact_location=str(out / "mlartifacts"))
        # output_dir given: the callback then never asks trainer.log_dir, a collective that only rank 0 reaches
        # in its teardown (a hang under DDP; see docs/multi-gpu.md)
        cb = EnergyCallback(output_dir=out / "callback_files")
        probe_stop, probe_start = CountersProbe(counters, "teardown"), CountersProbe(counters, "setup")
        gather = RankGather(cb, probe_start, probe_stop)
        callbacks = [probe_stop, cb, probe_start, gather]
        timer.before_start = wait_for_writers(cb)
    t = trainer(args, args.warmup + args.steps, [timer, *callbacks], logger)
    gc.collect()
    t0 = time.perf_counter()
    t.fit(ResNet18(), loader(args, args.warmup + args.steps))
    row: dict[str, Any] = {"kind": kind, "world_size": t.world_size, "fit_seconds": time.perf_counter() - t0,
                           "steps": args.steps, "steps_per_s": args.steps / timer.per_step("wall", 1.0)}
    row["samples_per_s"] = row["steps_per_s"] * args.batch_size * t.world_size
    if cb is not None and gather is not None and t.is_global_zero:
        row.update(energy_checks(cb, gather.ranks, counters))
        row["mlflow"] = mlflow_metrics(uri, logger.run_id)
    return row


def energy_checks(cb: Any, ranks: list[dict[str, Any]], counters: GpuCounters | None) -> dict[str, Any]:
    """Per GPU: which ranks metered it, the callback's J, the counter's J (rank 0's reads), the error."""
    owners: dict[str, list[int]] = {}
    for r in ranks:
        for name in r["sources"]:
            if name.startswith("gpu"):
                owners.setdefault(name, []).append(r["rank"])
    rank0 = ranks[0]
    gpus = []
    n = min(len(rank0["counter_start_J"]), len(ranks)) if rank0["counter_start_J"] is not None else 0  # GPUs in use
    for i in range(n):
        name = f"gpu{i}"
        counter_J = rank0["counter_stop_J"][i] - rank0["counter_start_J"][i]
        metered = [r for r in ranks if name in r["sources"]]
        callback_J = sum(r["sources"][name]["energy_J"] for r in metered) if metered else None
        own = metered[0] if len(metered) == 1 else None  # the owner's own reads bracket its own meter window
        own_J = own["counter_stop_J"][i] - own["counter_start_J"][i] if own and own["counter_start_J"] else None
        gpus.append({"gpu": name, "nvml_index": counters.nvml_index[i] if counters else None,
                     "metered_by_ranks": owners.get(name, []), "counter_J": counter_J, "callback_J": callback_J,
                     "counter_owner_window_J": own_J,
                     "error_pct": 100 * (callback_J / counter_J - 1) if callback_J is not None and counter_J else None})
    host = {name: s for name, s in rank0["sources"].items() if not name.startswith("gpu")}
    host_J = sum(s["energy_J"] for s in host.values())
    total_J = float(cb.summary["energy_J"])
    sum_local = sum(r["local_total_J"] for r in ranks)
    counters_J = sum(g["counter_J"] for g in gpus) if gpus else None
    return {"gpus": gpus, "gpu_owners": owners, "ranks": ranks, "host_J": host_J,
            "host_methods": {k: f"{s['provenance']}:{s['method']}" for k, s in host.items()},
            "callback_total_J": total_J, "sum_of_rank_totals_J": sum_local,
            "each_counted_once": all(len(v) == 1 for v in owners.values()) and abs(total_J - sum_local) <= 1e-6 * max(
                1.0, abs(total_J)),
            "counters_plus_host_J": counters_J + host_J if counters_J is not None else None,
            "total_error_pct": 100 * (total_J / (counters_J + host_J) - 1) if counters_J else None}


def mlflow_metrics(uri: str, run_id: str) -> dict[str, Any]:
    """What rank 0's MLflow run holds: the run total, the last cumulative GPU energy, the per-GPU power keys."""
    from mlflow.tracking import MlflowClient

    metrics = MlflowClient(uri).get_run(run_id).data.metrics
    return {"run_id": run_id, "energy/fit_J": metrics.get("energy/fit_J"), "energy/gpu_J": metrics.get("energy/gpu_J"),
            "energy/total_J": metrics.get("energy/total_J"),
            "power_gpu_keys": sorted(k for k in metrics if k.startswith("power/gpu"))}


def prepare_store(out: Path) -> None:
    """Create the SQLite store and experiment before the other ranks start (its migrations must run once)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out.resolve() / 'mlflow.db'}")
    if client.get_experiment_by_name("multi-gpu-ddp") is None:
        client.create_experiment("multi-gpu-ddp", artifact_location=(out.resolve() / "mlartifacts").as_uri())


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Paired throughput ratios, per-GPU errors over the energy fits, the totals' agreement."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["kind"]] = row
    ratios = [rd["energy"]["steps_per_s"] / rd["bare"]["steps_per_s"] for rd in by_round.values() if len(rd) == 2]
    energy = [r for r in rows if r["kind"] == "energy" and "gpus" in r]
    gpus: dict[str, dict[str, Any]] = {}
    for r in energy:
        for g in r["gpus"]:
            s = gpus.setdefault(g["gpu"], {"counter_J": [], "callback_J": [], "error_pct": [], "owners": []})
            s["counter_J"].append(g["counter_J"])
            s["callback_J"].append(g["callback_J"])
            s["owners"].append(g["metered_by_ranks"])
            if g["error_pct"] is not None:
                s["error_pct"].append(g["error_pct"])
    for s in gpus.values():
        s["max_abs_error_pct"] = max((abs(e) for e in s["error_pct"]), default=None)
        s["within_target"] = s["max_abs_error_pct"] is not None and s["max_abs_error_pct"] <= TARGET_ERROR_PCT
        s["counted_once"] = all(len(o) == 1 for o in s["owners"])
    ratio = median_ci(ratios) if ratios else (float("nan"), None, None)
    return {"ratio_per_round": ratios, "ratio": ratio, "throughput_verdict": verdict(ratio) if ratios else "no rounds",
            "steps_per_s": {k: [r["steps_per_s"] for r in rows if r["kind"] == k] for k in KINDS},
            "gpus": gpus,
            "callback_total_J": [r["callback_total_J"] for r in energy],
            "total_error_pct": [r["total_error_pct"] for r in energy if r["total_error_pct"] is not None],
            "each_counted_once": all(r["each_counted_once"] for r in energy) if energy else None,
            "host_J": [r["host_J"] for r in energy], "host_methods": energy[-1]["host_methods"] if energy else {},
            "mlflow_power_gpu_keys": energy[-1]["mlflow"]["power_gpu_keys"] if energy else [],
            "mlflow_fit_J_matches": all(r["mlflow"]["energy/fit_J"] is not None
                                        and abs(r["mlflow"]["energy/fit_J"] - r["callback_total_J"])
                                        <= 1e-6 * max(1.0, r["callback_total_J"]) for r in energy)}


def _med(values: list[float], fmt: str) -> str:
    return format(statistics.median(values), fmt) if values else "—"


def table(s: dict[str, Any], world: int) -> str:
    """The markdown table printed last: one row per GPU, the totals, the throughput ratio."""
    lines = ["| what | NVML counter, rank 0 reads (J) | EnergyCallback (J) | error, median (max abs) | target |",
             "| --- | ---: | ---: | ---: | --- |"]
    if not s["gpus"]:
        lines.append(f"| GPUs | no GPU | — | — | {world} CPU ranks (gloo): nothing to compare |")
    for name, g in s["gpus"].items():
        owners = ",".join(str(o) for o in sorted({r for o in g["owners"] for r in o}))
        err = (f"{statistics.median(g['error_pct']):+.2f} % ({g['max_abs_error_pct']:.2f} %)"
               if g["error_pct"] else "—")
        ok = "within 1 %" if g["within_target"] else "NOT within 1 %"
        lines.append(f"| {name} (metered by rank {owners}) | {_med(g['counter_J'], '.1f')} "
                     f"| {_med([v for v in g['callback_J'] if v is not None], '.1f')} | {err} "
                     f"| {ok}; {'counted once' if g['counted_once'] else 'NOT counted once'} |")
    host = ", ".join(f"{k}: {v}" for k, v in s["host_methods"].items()) or "none"
    total_err = (f"{statistics.median(s['total_error_pct']):+.2f} %" if s["total_error_pct"] else "—")
    counted = {True: "each device counted once", False: "NOT counted once", None: "—"}[s["each_counted_once"]]
    lines.append(f"| energy/fit_J (all ranks + host {_med(s['host_J'], '.1f')} J: {host}) "
                 f"| {'no GPU' if not s['gpus'] else 'counters + host'} | {_med(s['callback_total_J'], '.1f')} "
                 f"| {total_err} | {counted}; MLflow energy/fit_J "
                 f"{'matches' if s['mlflow_fit_J_matches'] else 'DIFFERS'}; MLflow power keys: "
                 f"{' '.join(s['mlflow_power_gpu_keys']) or 'none'} |")
    med, lo, hi = s["ratio"]
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None else ""
    rates = s["steps_per_s"]
    lines.append(f"| throughput energy / bare ({len(s['ratio_per_round'])} rounds; steps/s "
                 f"{_med(rates['energy'], '.1f')} vs {_med(rates['bare'], '.1f')}) | — | — | {med:.3f}{ci} "
                 f"| {s['throughput_verdict']} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", default="gpu", choices=["gpu", "cuda", "cpu"], help="gpu (default), or cpu")
    p.add_argument("--devices", type=int, default=None, help="processes: default every visible GPU; 2 on the CPU")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds of bare and energy fits (default 6)")
    p.add_argument("--steps", type=int, default=400, help="timed optimiser steps per fit (default 400)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 30 on GPU, 1 on CPU)")
    p.add_argument("--prime-steps", type=int, default=None, help="one untimed bare fit first (default 50 on GPU)")
    p.add_argument("--batch-size", type=int, default=128, help="per GPU (default 128)")
    p.add_argument("--budget-s", type=float, default=520.0,
                   help="start no round that would end later than this after launch (default 520; 0: no limit)")
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"), help="output folder (default $OUT)")
    args = p.parse_args(argv)
    gpu = on_cuda(args.accelerator)
    if args.devices is None:
        args.devices = torch.cuda.device_count() if gpu else 2
    args.warmup = args.warmup if args.warmup is not None else (30 if gpu else 1)
    args.prime_steps = args.prime_steps if args.prime_steps is not None else (50 if gpu else 0)
    for name in ("rounds", "steps", "batch_size", "warmup", "devices"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1" + (" (no GPU is visible here: use --accelerator cpu)"
                                                                   if name == "devices" and gpu else ""))
    if gpu and args.devices > torch.cuda.device_count():
        p.error(f"--devices {args.devices} but only {torch.cuda.device_count()} GPU(s) are visible")
    return args


def main(argv: list[str] | None = None) -> int:
    t_start = time.monotonic()
    args = parse_args(argv)
    prepare(args.accelerator)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counters = GpuCounters.open(args.accelerator)
    if is_rank_zero():
        prepare_store(out)
    if args.prime_steps:
        trainer(args, args.prime_steps, [], False).fit(ResNet18(), loader(args, args.prime_steps))
    rows: list[dict[str, Any]] = []
    rounds_t0 = time.monotonic()
    for r in range(args.rounds):
        if r:
            now = time.monotonic()
            go = args.budget_s <= 0 or now - t_start + (now - rounds_t0) / r <= args.budget_s
            if not agree(go):
                if is_rank_zero():
                    print(f"stopping after {r} rounds: another would end past --budget-s {args.budget_s:g}", flush=True)
                break
        for kind in round_order(KINDS, r):
            row = {"round": r, **one_fit(kind, args, counters)}
            rows.append(row)
            if is_rank_zero():
                errs = " ".join(f"{g['gpu']} {g['error_pct']:+.2f} %" for g in row.get("gpus", [])
                                if g["error_pct"] is not None)
                print(f"round {r} {kind:6s} {row['steps_per_s']:7.1f} steps/s {errs}", flush=True)
    if not is_rank_zero():
        return 0
    summary = summarise(rows)
    world = rows[0]["world_size"] if rows else args.devices
    info = {"device": (torch.cuda.get_device_name() if on_cuda(args.accelerator) else platform.processor() or "cpu"),
            "gpus": torch.cuda.device_count() if on_cuda(args.accelerator) else 0, "world_size": world,
            "torch": torch.__version__, "lightning": pl.__version__, "python": platform.python_version(),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "date": time.strftime("%Y-%m-%d"),
            "wall_s": time.monotonic() - t_start, "args": vars(args)}
    (out / "multi_gpu_ddp.json").write_text(json.dumps({"info": info, "summary": summary, "details": rows},
                                                       indent=2, default=str))
    print(f"{info['device']} × {world} ranks, {args.steps} timed steps per fit; details in {out / 'multi_gpu_ddp.json'}")
    print(table(summary, world), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
