"""The workloads the benchmarks time under Lightning: torchvision ResNet18 on CIFAR-shaped batches, and MLPs.

``resnet18`` (the default) is a step of about 13 ms on an H100/H200; the MLPs make short steps, where a
per-step cost shows most (issue #16): ``mlp`` (two hidden layers of 256 on 256 inputs, 134 k parameters,
the module also ``self.log``s its loss every step, as in the issue's measurement) and ``mlp-small`` (width
64, 21 k parameters, no ``self.log``), for ≥ 250 and ≥ 1000 steps a second on a GPU.

A fit runs ``warmup`` optimiser steps, then times ``steps`` more between two GPU-synchronised
``perf_counter`` reads. Besides steps/s it records what is far less noisy than wall time on a shared
VM: the training (main) thread's CPU time per step (``time.thread_time``), the whole process's and
its child processes' CPU time over the same steps, the NVML energy counter over the timed steps and
around the whole fit, peak RSS and the child processes' RSS. ``accelerator="cpu"`` runs the same
code on a machine without a GPU (smoke tests); NVML figures are then None.

Batches come from a pool made once (random images, 10 classes) and are served ready-made, pinned on
CUDA machines, with no loader workers: the data path costs next to nothing and adds no noise of its
own, so whatever a callback or logger adds shows in full.
"""
from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from torch.utils.data import DataLoader, Dataset

ACCELERATORS = ("gpu", "cuda", "cpu")


def on_cuda(accelerator: str) -> bool:
    """True for the accelerators that train on an NVIDIA GPU (and need synchronising before a clock read)."""
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}; got {accelerator!r}")
    return accelerator != "cpu"


def check_accelerator(accelerator: str) -> None:
    """Fail before any training when a GPU run is asked for on a machine without CUDA."""
    if on_cuda(accelerator) and not torch.cuda.is_available():
        raise SystemExit(f"--accelerator {accelerator} needs a CUDA GPU and none is visible here; "
                         "use --accelerator cpu for a smoke run")


#: workload -> (hidden width, whether the module self.logs its loss every step); None: ResNet18
WORKLOADS: dict[str, tuple[int, bool] | None] = {"resnet18": None, "mlp": (256, True), "mlp-small": (64, False)}
MLP_INPUTS = 256


class BatchPool(Dataset):
    """``length`` batches served in turn from ``batches`` made once (item i is a whole batch): CIFAR-shaped
    images, or ``features`` inputs a sample for an MLP."""

    def __init__(self, batches: int, batch_size: int, length: int, pin: bool = False,
                 features: int | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        shape = (batch_size, 3, 32, 32) if features is None else (batch_size, features)
        self.x = [torch.randn(*shape, generator=g) for _ in range(batches)]
        self.y = [torch.randint(0, 10, (batch_size,), generator=g) for _ in range(batches)]
        if pin:
            self.x = [x.pin_memory() for x in self.x]
            self.y = [y.pin_memory() for y in self.y]
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i % len(self.x)], self.y[i % len(self.x)]


class ResNet18(pl.LightningModule):
    """ResNet18 (10 classes), SGD as in the paper; ``log_five`` self.log()s five metrics every step."""

    def __init__(self, log_five: bool = False) -> None:
        super().__init__()
        self.net = torchvision.models.resnet18(num_classes=10)
        self.log_five = log_five

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        if self.log_five:
            acc = (logits.argmax(1) == y).float().mean()
            for name, value in (("loss", loss), ("acc", acc), ("lr", 0.001), ("logit_mean", logits.mean()),
                                ("logit_std", logits.std())):
                self.log(f"train/{name}", value)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.001, weight_decay=5e-4)


class MLP(pl.LightningModule):
    """Two hidden layers of ``width`` on ``MLP_INPUTS`` inputs, 10 classes; ``log_loss`` self.log()s the loss."""

    def __init__(self, width: int, log_loss: bool) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(MLP_INPUTS, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                                       torch.nn.ReLU(), torch.nn.Linear(width, 10))
        self.log_loss = log_loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        if self.log_loss:
            self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_model(workload: str, log_five: bool = False) -> pl.LightningModule:
    """The LightningModule of ``workload`` (see ``WORKLOADS``); ``log_five`` applies to ResNet18 only."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}; got {workload!r}")
    spec = WORKLOADS[workload]
    return ResNet18(log_five=log_five) if spec is None else MLP(*spec)


class GpuCounter:
    """The NVML energy counter (in J) of the GPU this process trains on; ``open`` gives None without one."""

    def __init__(self, index: int, nvml: Any) -> None:
        self.index = index  # NVML's index of the GPU (what MLflow's and CodeCarbon's GPU numbers mean)
        self._handle, self._nvml = nvml.nvmlDeviceGetHandleByIndex(index), nvml

    @classmethod
    def open(cls, accelerator: str) -> GpuCounter | None:
        if not on_cuda(accelerator):
            return None
        import pynvml

        pynvml.nvmlInit()
        index = torch.cuda.current_device()
        uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", "")).removeprefix("GPU-")
        for i in range(pynvml.nvmlDeviceGetCount()):  # torch's index is not NVML's under CUDA_VISIBLE_DEVICES
            nvml_uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            nvml_uuid = nvml_uuid.decode() if isinstance(nvml_uuid, bytes) else nvml_uuid
            if uuid and nvml_uuid.removeprefix("GPU-") == uuid:
                return cls(i, pynvml)
        return cls(index, pynvml)

    def read_J(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0


class CounterProbe(pl.Callback):
    """Reads the GPU counter in ``setup`` and ``teardown``.

    Lightning calls callbacks in list order, so a probe placed right after an energy callback reads
    when that callback's meter has just started, and one placed right before it reads just before
    its meter stops: together they bracket the callback's own measuring window.
    """

    def __init__(self, counter: GpuCounter | None) -> None:
        self.counter = counter
        self.at_setup: float | None = None
        self.at_teardown: float | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.at_setup = self.counter.read_J() if self.counter else None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.at_teardown = self.counter.read_J() if self.counter else None


def children_cpu_s() -> float:
    """CPU seconds used so far by this process's live child processes (MLflow delivery, tools' helpers)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _cpu_s(stat: Path, fallback: Callable[[], float]) -> float:
    """CPU seconds from Linux's ``schedstat`` (nanoseconds; psutil's clock ticks are 10 ms), else ``fallback``."""
    try:
        return int(stat.read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return fallback()


def green_cpu_s() -> dict[str, float]:
    """CPU seconds so far of green_mlops' threads in this process (named ``green-mlops-*``: sampler, stream,
    writer) and of its helper processes (the MLflow delivery process), by name."""
    import threading

    import psutil

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    me = psutil.Process()
    for t in me.threads():
        name = names.get(t.id, "")
        if name.startswith("green-mlops"):
            cpu = _cpu_s(Path(f"/proc/{me.pid}/task/{t.id}/schedstat"), lambda t=t: t.user_time + t.system_time)
            out[name] = out.get(name, 0.0) + cpu
    for child in me.children(recursive=True):
        try:
            if any("green_mlops.mlflow.delivery" in c for c in child.cmdline()):
                tasks = Path(f"/proc/{child.pid}/task")
                cpu = (sum(_cpu_s(t / "schedstat", lambda: 0.0) for t in tasks.iterdir()) if tasks.is_dir()
                       else sum(child.cpu_times()[:2]))
                out["delivery process"] = out.get("delivery process", 0.0) + cpu
        except psutil.Error:
            pass
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def children_memory() -> list[dict[str, Any]]:
    """This process's live child processes now: name, resident (RSS) and unique (USS) memory in MB.

    Not their peak: a child started by fork has the parent's peak in its own ru_maxrss until it execs.
    USS leaves out the pages a child shares (the interpreter, libc), which RSS counts in every process.
    """
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            with child.oneshot():
                cmd = child.cmdline()
                mem = child.memory_full_info()
            if any("green_mlops.mlflow.delivery" in c for c in cmd):
                what = "green_mlops MLflow delivery process"
            else:
                what = next((Path(c).name for c in cmd[1:] if c.endswith(".py")), " ".join(cmd)[:80] or child.name())
            found.append({"pid": child.pid, "what": what[:120], "rss_mb": mem.rss / 2**20, "uss_mb": mem.uss / 2**20})
        except psutil.Error:
            pass
    return found


class Timer(pl.Callback):
    """Times ``steps`` optimiser steps after ``warmup``: wall clock (GPU synchronised) and CPU clocks.

    ``before_start`` runs at the end of warm-up, before the clock starts: a set-up can wait there for
    its background machinery (e.g. a delivery process importing MLflow) to be up.
    """

    def __init__(self, warmup: int, steps: int, sync: bool, counter: GpuCounter | None = None,
                 before_start: Callable[[], None] | None = None) -> None:
        self.warmup, self.steps, self.sync, self.counter = warmup, steps, sync, counter
        self.before_start = before_start
        self.start: dict[str, float | None] = {}
        self.end: dict[str, float | None] = {}
        self.ready_wait_s = 0.0
        self.children: list[dict[str, Any]] = []
        self.rss_mb_at_end = 0.0
        self.green_start: dict[str, float] = {}
        self.green_end: dict[str, float] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            if self.before_start is not None:
                t = time.perf_counter()
                self.before_start()
                self.ready_wait_s = time.perf_counter() - t
            if self.sync:
                torch.cuda.synchronize()
            # the slow reads first (NVML counter ~4 ms, psutil), so no clock's window holds them
            self.green_start = green_cpu_s()
            self.start = {"counter": self.counter.read_J() if self.counter else None, "children": children_cpu_s()}
            self.start.update(process=time.process_time(), thread=time.thread_time(), wall=time.perf_counter())
        elif trainer.global_step == self.warmup + self.steps:
            if self.sync:
                torch.cuda.synchronize()
            self.end = {"wall": time.perf_counter(), "thread": time.thread_time(), "process": time.process_time()}
            self.end.update(children=children_cpu_s(), counter=self.counter.read_J() if self.counter else None)
            self.green_end = green_cpu_s()
            self.children = children_memory()
            self.rss_mb_at_end = rss_mb()

    def per_step(self, clock: str, scale: float = 1e6) -> float:
        """A clock's advance per timed step (µs for CPU clocks by default)."""
        if not self.start or not self.end:
            raise RuntimeError("the timed steps did not complete (fewer steps than warm-up + timed ran)")
        return (self.end[clock] - self.start[clock]) / self.steps * scale

    def green_per_step(self) -> dict[str, float]:
        """CPU µs per timed step of each green_mlops thread and helper process (see ``green_cpu_s``)."""
        return {k: (v - self.green_start.get(k, 0.0)) / self.steps * 1e6 for k, v in self.green_end.items()}


@dataclass
class FitResult:
    """What one timed fit measured; the CPU figures are per timed step."""

    steps: int
    seconds: float
    steps_per_s: float
    main_thread_cpu_us: float
    process_cpu_us: float
    children_cpu_us: float
    gpu_J_timed: float | None  # NVML counter over the timed steps
    gpu_J_fit: float | None  # NVML counter read just before trainer.fit and just after it returned
    fit_seconds: float
    ready_wait_s: float
    children_rss_mb: float  # live child processes at the end of the timed steps: resident, unique
    children_uss_mb: float
    children: list[dict[str, Any]]
    rss_mb_at_end: float  # this process at the end of the timed steps (peak_rss_mb also covers what came after)
    peak_rss_mb: float
    green_cpu_us: dict[str, float]  # per timed step: each green_mlops thread and helper process

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare(accelerator: str) -> None:
    """Process-wide settings every run shares: fixed seed, cuDNN autotuning as training scripts use it."""
    check_accelerator(accelerator)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True


def run_fit(accelerator: str = "gpu", steps: int = 300, warmup: int = 30, batch_size: int = 128, *,
            logger: Any = False, callbacks: Sequence[pl.Callback] = (), log_five: bool = False,
            counter: GpuCounter | None = None, before_start: Callable[[], None] | None = None,
            root_dir: str | None = None, workload: str = "resnet18") -> FitResult:
    """One fit of ``workload`` for ``warmup + steps`` steps; times the last ``steps`` (see the module doc).

    ``root_dir``: where Lightning and callbacks without an MLflow logger write files (default: the cwd).
    """
    if steps < 1 or warmup < 1:
        raise ValueError(f"steps and warmup must be ≥ 1; got steps={steps}, warmup={warmup}")
    cuda = on_cuda(accelerator)
    timer = Timer(warmup, steps, cuda, counter, before_start)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, max_steps=warmup + steps, logger=logger,
                         callbacks=[timer, *callbacks], enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1, num_sanity_val_steps=0,
                         default_root_dir=root_dir)
    model = make_model(workload, log_five)
    features = None if WORKLOADS[workload] is None else MLP_INPUTS
    data = DataLoader(BatchPool(16, batch_size, warmup + steps + 10, pin=cuda, features=features), batch_size=None,
                      num_workers=0)
    gc.collect()  # every fit starts from the same heap state: no collection of the last fit's garbage mid-timing
    c0 = counter.read_J() if counter else None
    t0 = time.perf_counter()
    trainer.fit(model, data)
    fit_seconds = time.perf_counter() - t0
    c1 = counter.read_J() if counter else None
    seconds = timer.per_step("wall", 1.0) * steps
    timed_J = timer.end["counter"] - timer.start["counter"] if counter else None
    return FitResult(steps=steps, seconds=seconds, steps_per_s=steps / seconds,
                     main_thread_cpu_us=timer.per_step("thread"), process_cpu_us=timer.per_step("process"),
                     children_cpu_us=timer.per_step("children"), gpu_J_timed=timed_J,
                     gpu_J_fit=c1 - c0 if counter else None, fit_seconds=fit_seconds,
                     ready_wait_s=timer.ready_wait_s,
                     children_rss_mb=sum(c["rss_mb"] for c in timer.children),
                     children_uss_mb=sum(c["uss_mb"] for c in timer.children), children=timer.children,
                     rss_mb_at_end=timer.rss_mb_at_end,
                     peak_rss_mb=peak_rss_mb(), green_cpu_us=timer.green_per_step())


def wait_for_writers(callback: pl.Callback, timeout: float = 120.0) -> Callable[[], None]:
    """A ``before_start`` that waits until an EnergyCallback's MLflow delivery processes have caught up.

    The delivery process is a fresh interpreter that imports MLflow (seconds of CPU on another core);
    waiting for it to acknowledge the warm-up steps keeps that start-up out of the timed steps.
    """

    def wait() -> None:
        for writer in getattr(getattr(callback, "_sinks", None), "writers", []):
            if not writer.flush(timeout=timeout):
                raise RuntimeError(f"MLflow delivery process not ready after {timeout} s: {writer.last_error}")

    return wait
