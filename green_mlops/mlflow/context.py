"""Hardware and provenance tags on every MLflow run, through MLflow's run-context-provider plugin hook.

Registered in pyproject.toml under ``mlflow.run_context_provider``: MLflow calls it for each new run,
including runs created by Lightning's ``MLFlowLogger`` (it resolves tags the same way). Tags:
``green_mlops.hw.*`` (CPU model, cores, RAM, GPUs, driver, VM) and ``green_mlops.method.{gpu,cpu,dram}``
with ``green_mlops.provenance.{gpu,cpu,dram}``. Discovery runs once per process and can never break a run.
"""
from __future__ import annotations

import logging
import threading

from mlflow.tracking.context.abstract_context import RunContextProvider

from green_mlops.meter import Settings, discover
from green_mlops.meter.machine import machine_facts
from green_mlops.meter.source import DOMAINS

log = logging.getLogger(__name__)
_lock = threading.Lock()
_cache: dict[str, str] | None = None


def hardware_tags() -> dict[str, str]:
    """The tags, computed once per process."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = _compute()
        return dict(_cache)


def _compute() -> dict[str, str]:
    tags: dict[str, str] = {}
    try:
        tags.update({f"green_mlops.hw.{k}": v for k, v in machine_facts().items()})
        found = discover(Settings.from_env())
        for domain in DOMAINS:
            infos = [s.info for s in found.sources if s.info.domain == domain]
            tags[f"green_mlops.method.{domain}"] = ",".join(sorted({i.method for i in infos})) or "none"
            tags[f"green_mlops.provenance.{domain}"] = ",".join(sorted({i.provenance for i in infos})) or "none"
        for s in found.sources:
            s.close()
    except Exception as exc:  # noqa: BLE001 - a tag must never stop a user's run
        log.warning("green_mlops: hardware tags incomplete: %s", exc)
    return tags


class GreenMlopsRunContext(RunContextProvider):
    """MLflow plugin: adds green_mlops hardware and provenance tags to every run."""

    def in_context(self) -> bool:
        return True

    def tags(self) -> dict[str, str]:
        return hardware_tags()
