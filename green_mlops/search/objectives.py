"""What a trial is scored on: validation accuracy against lifecycle energy (training + expected serving).

Lifecycle energy = training energy + inference energy per sample × the expected number of inference
samples (the paper's §6.1: a model is trained once and then served). Modes:
  pareto     - two objectives (maximise accuracy, minimise lifecycle energy); Optuna keeps the front
  acc-per-kj - one objective: accuracy per kJ of lifecycle energy (maximise)
  penalty    - one objective: accuracy − λ · lifecycle kWh (maximise)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from green_mlops.argtypes import check_number, check_whole

MODES = ("pareto", "acc-per-kj", "penalty")
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Objective:
    """How trials are compared; ``penalty_per_kwh`` is λ of the penalty mode (accuracy points per kWh)."""

    mode: str = "pareto"
    inference_samples: int | None = None
    penalty_per_kwh: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown objective mode {self.mode!r}; choose one of {', '.join(MODES)}")
        check_whole("--inference-samples", self.inference_samples, 0, allow_none=True)
        check_number("--penalty-per-kwh", self.penalty_per_kwh, positive=False, example="1.0")

    @property
    def directions(self) -> list[str]:
        """Optuna study directions for this mode."""
        return ["maximize", "minimize"] if self.mode == "pareto" else ["maximize"]

    def lifecycle_J(self, training_J: float, inference_J_per_sample: float | None, default_samples: int) -> float:
        """Training energy plus the serving volume's inference energy."""
        n = self.inference_samples if self.inference_samples is not None else default_samples
        return training_J + (inference_J_per_sample or 0.0) * n

    def values(self, accuracy: float, lifecycle_J: float) -> list[float]:
        """The objective values Optuna is told."""
        if self.mode == "pareto":
            return [accuracy, lifecycle_J]
        if self.mode == "acc-per-kj":
            return [accuracy_per_kJ(accuracy, lifecycle_J)]
        return [accuracy - self.penalty_per_kwh * lifecycle_J / J_PER_KWH]

    def describe(self) -> str:
        """One line for logs and MLflow params."""
        if self.mode == "penalty":
            return f"maximise accuracy − {self.penalty_per_kwh:g}·kWh(lifecycle)"
        if self.mode == "acc-per-kj":
            return "maximise accuracy per kJ of lifecycle energy"
        return "Pareto: maximise accuracy, minimise lifecycle energy"


def accuracy_per_kJ(accuracy: float, lifecycle_J: float) -> float:
    """Accuracy per kilojoule; infinite energy (or none measured) gives 0, never a division error."""
    return accuracy / (lifecycle_J / 1000.0) if lifecycle_J > 0 else math.nan
