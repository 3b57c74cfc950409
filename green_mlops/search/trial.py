"""The contract between the search and whatever trains one configuration."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl


@dataclass
class TrialContext:
    """What a trial runner gets: the point to train, its MLflow run, and callbacks to add to the Trainer."""

    number: int
    params: dict[str, Any]
    run_id: str
    tracking_uri: str
    callbacks: list[pl.Callback] = field(default_factory=list)
    over_budget: Callable[[], bool] = lambda: False
    #: ``report(step, planned_steps, accuracy, spent_J, inference_J_per_sample=None) -> stop?``: intermediate
    #: values for the pruner (a runner without Lightning calls it itself; the pruning callback in ``callbacks``
    #: does for Lightning ones). ``inference_J_per_sample``: what the validation pass drew per sample, if known.
    report: Callable[..., bool] = lambda step, planned, accuracy, spent, inference_J_per_sample=None: False


@dataclass
class TrialResult:
    """What a trial runner returns. Energies in joules, from the EnergyCallback (provenance in ``methods``).

    ``inference_samples`` is how many samples the inference measurement covered (the default serving
    volume); ``inference_J_per_sample`` is None when inference was skipped (e.g. stopped over budget).
    ``overhead_J`` is the part of ``training_J`` only the search spent (the pruner's extra validation passes):
    counted in the search's cost, not in the model's lifecycle energy; 0 lets the sweep take it from its own
    pruning callback (a Lightning runner has nothing to do). ``accuracy_samples``: how many validation samples
    the accuracy is over (the pruner's tie), when known.
    """

    accuracy: float | None
    training_J: float
    inference_J_per_sample: float | None
    inference_samples: int
    duration_s: float | None = None
    steps: int | None = None
    methods: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    overhead_J: float = 0.0
    accuracy_samples: int | None = None


TrialRunner = Callable[[TrialContext], TrialResult]
