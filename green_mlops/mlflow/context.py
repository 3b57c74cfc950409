"""Hardware and provenance tags on every MLflow run, through MLflow's run-context-provider plugin hook.

Registered in pyproject.toml under ``mlflow.run_context_provider``. MLflow asks every registered
provider for tags in ``mlflow.start_run()`` (``tracking.context.registry.resolve_tags``); Lightning's
``MLFlowLogger`` calls the same ``resolve_tags`` before ``MlflowClient.create_run``, so its runs get
the tags too. A bare ``MlflowClient().create_run()`` resolves no context tags (MLflow's choice).

Tags: ``green_mlops.hw.<fact>`` for every fact of :func:`green_mlops.meter.machine.machine_facts`
(CPU model, cores, RAM, GPU names and count, driver, VM...), ``green_mlops.method.{gpu,cpu,dram}``
(the method of the source discovered for the domain, several joined with ``,``; ``none`` when no
source) and ``green_mlops.provenance.{gpu,cpu,dram}`` (``measured`` / ``estimated``).

Discovery runs once per process; whatever fails is logged and left out, never raised into a run.
Every ``nvmlInit`` done here is matched by an ``nvmlShutdown`` (NVML counts them), so no NVML
session is left open on the user's behalf.
"""
from __future__ import annotations

import logging
import sys
import threading
import warnings
from typing import Any

from green_mlops import names

# MLflow loads its run-context-provider entry points while ``import mlflow`` runs. When this module
# is the first to import MLflow, that load finds this module half-initialised, warns and skips it;
# we then register the class ourselves below, and silence that one warning.
_FIRST_TO_LOAD_MLFLOW = "mlflow.tracking.context.registry" not in sys.modules
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Failure attempting to register context provider "green_mlops"')
    from mlflow.tracking.context.abstract_context import RunContextProvider


log = logging.getLogger(__name__)
PREFIX = names.TAG_PREFIX
_lock = threading.Lock()
_cache: dict[str, str] | None = None


class _CountedNvml:
    """pynvml, counting the successful ``nvmlInit`` calls so that each can be shut down again."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self.inits = 0

    def nvmlInit(self) -> None:  # pynvml's name
        self._nvml.nvmlInit()
        self.inits += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nvml, name)

    def shutdown(self) -> None:
        for _ in range(self.inits):
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("green_mlops: nvmlShutdown failed: %s", exc)
        self.inits = 0


def hardware_tags() -> dict[str, str]:
    """The tags, computed on first use and then cached for the life of the process."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = _compute()
        return dict(_cache)


def _clear_cache() -> None:
    """Forget the cached tags (tests; a process whose hardware view changed)."""
    global _cache
    with _lock:
        _cache = None


def _compute() -> dict[str, str]:
    # The meter is imported here, not at the top: MLflow loads this plugin in every process that
    # imports MLflow (the metric delivery process too), and most of them never ask for tags.
    from green_mlops.meter import machine_facts

    tags: dict[str, str] = {}
    try:
        import pynvml

        nvml: Any = _CountedNvml(pynvml)
    except Exception:  # no nvidia-ml-py: machine_facts and discovery report no GPU
        nvml = None
    try:
        try:
            tags.update({names.hw_tag(k): str(v) for k, v in machine_facts(nvml).items()})
        except Exception as exc:  # a tag must never stop a user's run
            log.warning("green_mlops: no hardware tags on this run (machine facts failed: %r)", exc)
        try:
            tags.update(_method_tags(nvml))
        except Exception as exc:
            log.warning("green_mlops: no method/provenance tags on this run (discovery failed: %r)", exc)
    finally:
        if nvml is not None:
            nvml.shutdown()
    return tags


def _method_tags(nvml: Any) -> dict[str, str]:
    from green_mlops.meter import DOMAINS, Settings, discover, discover_nvml, upgrade_superchips

    settings = Settings.from_env()
    found = discover(settings, gpu=False)
    if nvml is not None:
        found.extend(upgrade_superchips(discover_nvml(settings, nvml=nvml), settings))
    covered = {d for s in found.sources for d in s.covers}  # in a superchip module's counter, as the meter does
    try:
        tags = {}
        for domain in DOMAINS:
            infos = [s.info for s in found.sources
                     if (domain in s.covers if domain in covered else s.info.domain == domain)]
            tags[names.method_tag(domain)] = ",".join(sorted({i.method for i in infos})) or "none"
            tags[names.provenance_tag(domain)] = ",".join(sorted({i.provenance for i in infos})) or "none"
        return tags
    finally:
        for source in found.sources:
            try:
                source.close()
            except Exception:
                pass


class GreenMlopsRunContext(RunContextProvider):
    """MLflow plugin: adds green_mlops hardware, method and provenance tags to every run."""

    def in_context(self) -> bool:
        return True

    def tags(self) -> dict[str, str]:
        try:
            return hardware_tags()
        except Exception as exc:  # belt and braces: _compute already catches
            log.warning("green_mlops: hardware tags unavailable: %r", exc)
            return {}


def _register_if_missed() -> None:
    """Register the provider when MLflow's own entry-point load missed it (see the import above)."""
    if not _FIRST_TO_LOAD_MLFLOW:
        return  # MLflow is loading us through the entry point, or already has: it registers us
    try:
        from mlflow.tracking.context import registry

        if not any(isinstance(p, GreenMlopsRunContext) for p in registry._run_context_provider_registry):
            registry._run_context_provider_registry.register(GreenMlopsRunContext)
    except Exception as exc:  # a private MLflow name moved: tags are lost, runs are not
        log.warning("green_mlops: could not register the MLflow run context provider: %r", exc)


_register_if_missed()
