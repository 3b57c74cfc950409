"""The search space: architectures × batch sizes (× learning rates), from the command line or a YAML file.

A finite space (lists only) is enumerated as a grid, every combination run once; a learning-rate range
makes it a sampled space, where Optuna's sampler chooses.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_YAML_KEYS = {"archs", "batch_sizes", "lrs", "lr_range"}


class SpaceError(ValueError):
    """The search space is empty or malformed; the message says how to fix it."""


@dataclass(frozen=True)
class SearchSpace:
    """What a sweep explores. ``lrs`` is a list of values; ``lr_range`` a (low, high) log-uniform range."""

    archs: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    lrs: tuple[float, ...] = (0.001,)
    lr_range: tuple[float, float] | None = None

    @property
    def is_grid(self) -> bool:
        """True when every point can be enumerated (no continuous range)."""
        return self.lr_range is None

    def grid(self) -> list[dict[str, Any]]:
        """Every combination, in a stable order (architecture-major)."""
        if not self.is_grid:
            raise SpaceError("a learning-rate range has no grid; give --lrs as a list, or use --n-trials")
        return [{"arch": a, "batch_size": b, "lr": lr}
                for a, b, lr in itertools.product(self.archs, self.batch_sizes, self.lrs)]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one point through an Optuna trial (the sampler decides)."""
        params = {"arch": trial.suggest_categorical("arch", list(self.archs)),
                  "batch_size": trial.suggest_categorical("batch_size", list(self.batch_sizes))}
        if self.lr_range is not None:
            params["lr"] = trial.suggest_float("lr", *self.lr_range, log=True)
        else:
            params["lr"] = trial.suggest_categorical("lr", list(self.lrs))
        return params

    def size(self) -> float:
        """Number of grid points (infinite for a range)."""
        return math.inf if not self.is_grid else len(self.archs) * len(self.batch_sizes) * len(self.lrs)

    def describe(self) -> dict[str, str]:
        """The space as MLflow params."""
        out = {"space.archs": ",".join(self.archs), "space.batch_sizes": ",".join(map(str, self.batch_sizes))}
        out["space.lr"] = (f"log-uniform[{self.lr_range[0]:g}, {self.lr_range[1]:g}]" if self.lr_range
                           else ",".join(f"{v:g}" for v in self.lrs))
        return out


def _split(value: str | Iterable[Any] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _batch_sizes(values: list[str]) -> tuple[int, ...]:
    out = []
    for v in values:
        try:
            b = int(v)
        except ValueError:
            raise SpaceError(f"batch size {v!r} is not a whole number; e.g. --batch-sizes 32,64,128") from None
        if b <= 0:
            raise SpaceError(f"batch size must be ≥ 1; got {b} (e.g. --batch-sizes 32,64,128)")
        out.append(b)
    return tuple(dict.fromkeys(out))


def _positive_floats(values: list[str], what: str) -> tuple[float, ...]:
    out = []
    for v in values:
        try:
            x = float(v)
        except ValueError:
            raise SpaceError(f"{what} {v!r} is not a number; e.g. --lrs 0.001,0.01") from None
        if not (x > 0 and math.isfinite(x)):
            raise SpaceError(f"{what} must be a positive number; got {v}")
        out.append(x)
    return tuple(dict.fromkeys(out))


def _lr_range(value: str | Sequence[Any]) -> tuple[float, float]:
    parts = value.split(":") if isinstance(value, str) else list(value)
    lo_hi = _positive_floats([str(p) for p in parts], "learning-rate bound")
    if len(parts) != 2 or len(lo_hi) != 2 or lo_hi[0] >= lo_hi[1]:
        raise SpaceError(f"learning-rate range must be LOW:HIGH with 0 < LOW < HIGH (e.g. 1e-4:1e-1); got {value!r}")
    return lo_hi[0], lo_hi[1]


def build_space(archs: str | Iterable[str] | None = None, batch_sizes: str | Iterable[Any] | None = None,
                lrs: str | Iterable[Any] | None = None, lr_range: str | Sequence[Any] | None = None,
                config: str | Path | None = None,
                check_arch: Callable[[str], None] | None = None) -> SearchSpace:
    """Build and validate a space; command-line values override the YAML file's.

    ``check_arch`` validates each architecture name cheaply (without building it) and raises with a
    helpful message; every error here is raised before any training starts.
    """
    spec: dict[str, Any] = {}
    if config is not None:
        spec = load_yaml(config)
    arch_list = _split(archs) or _split(spec.get("archs"))
    bs_list = _split(batch_sizes) or _split(spec.get("batch_sizes"))
    if not arch_list:
        raise SpaceError("the search space has no architectures: give --archs lenet,resnet18 (or `archs:` in "
                         "the YAML file); `green-mlops sweep --list-archs` shows the choices")
    if not bs_list:
        raise SpaceError("the search space has no batch sizes: give --batch-sizes 32,128 (or `batch_sizes:`)")
    lr_spec = lr_range if lr_range is not None else spec.get("lr_range")
    lr_values = _split(lrs) or _split(spec.get("lrs"))
    if lr_spec is not None and lr_values:
        raise SpaceError("give either a list of learning rates (--lrs) or a range (--lr-range), not both")
    for a in arch_list:
        if check_arch is not None:
            check_arch(a)
    unknown = set(spec) - _YAML_KEYS
    if unknown:
        raise SpaceError(f"space file has unknown keys {sorted(unknown)}; allowed: {sorted(_YAML_KEYS)}")
    return SearchSpace(archs=tuple(dict.fromkeys(arch_list)), batch_sizes=_batch_sizes(bs_list),
                       lrs=_positive_floats(lr_values, "learning rate") if lr_values else (0.001,),
                       lr_range=_lr_range(lr_spec) if lr_spec is not None else None)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a space file: keys ``archs``, ``batch_sizes``, ``lrs`` or ``lr_range``, nothing else."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpaceError(f"space file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpaceError(f"space file {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpaceError(f"space file {str(p)!r} must be a mapping, e.g.\narchs: [lenet, resnet18]\n"
                         "batch_sizes: [32, 128]")
    return data
