"""Optional parts of green-mlops, and the ``pip install`` line that adds each one.

``pip install green-mlops`` gives the meter, the CLI, the Lightning callback, the MLflow plugin and the
Optuna search. Everything else is a named extra; :func:`require` imports one of its modules where the
feature starts, or raises :class:`MissingExtra` naming the line to run instead of a bare ImportError.
"""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtra", "check", "install_line", "require"]

#: extra -> (what it adds, the modules it provides). Kept in step with pyproject.toml's optional-dependencies.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "genai": ("LLM inference energy (`green-mlops genai`)", ("aiohttp", "prometheus_client")),
    "transformers": ("the bundled `transformers serve` endpoint and random Llama for `green-mlops genai`",
                     ("transformers",)),
    "postgres": ("Optuna studies on PostgreSQL for multi-worker searches", ("psycopg",)),
    "analysis": ("the paper's analysis and `green-mlops report`", ("sklearn", "scipy", "joblib")),
    "demo": ("the bundled digits data (`green-mlops demo`, `--dataset digits` or `digits50k`)", ("sklearn",)),
    "prometheus": ("a Prometheus endpoint for the meter (`--prometheus-port`)", ("prometheus_client",)),
    "thop": ("MACs counted by thop (ultralytics-thop, AGPL-3.0) instead of torch.utils.flop_counter",
             ("thop",)),
    "amd": ("AMD Instinct GPUs through amdsmi (install the amdsmi matching your ROCm)", ("amdsmi",)),
}


class MissingExtra(ImportError):
    """An optional feature was used without its extra; the message is the ``pip install`` line to run."""


def install_line(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install 'green-mlops[{extra}]'"


def require(extra: str, module: str | None = None) -> ModuleType:
    """Import ``module`` (default: every module of ``extra``, returning the last) or raise MissingExtra."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    what, modules = EXTRAS[extra]
    loaded: ModuleType | None = None
    for name in (module,) if module else modules:
        try:
            loaded = importlib.import_module(name)
        except ImportError as exc:
            raise MissingExtra(f"{what} needs the optional package {name.split('.')[0]!r} ({exc}); "
                               f"install it with: {install_line(extra)}") from exc
    assert loaded is not None
    return loaded


def check(extra: str, module: str) -> None:
    """Raise MissingExtra unless ``module`` is installed, without importing it (for one a subprocess runs)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{EXTRAS[extra][0]} needs the optional package {module!r}; "
                           f"install it with: {install_line(extra)}")
