"""Errors of the analysis, each saying what to run first; the CLI prints them without a traceback."""
from __future__ import annotations

__all__ = ["AnalysisError", "ExperimentNotFound", "MissingData", "NoEnergyMetrics", "NoRuns", "TooFewRuns"]

FIRST_RUN_HINT = ("log runs first: `green-mlops sweep --experiment NAME ...`, or train with "
                  "green_mlops.lightning.EnergyCallback and an MLFlowLogger(experiment_name=NAME)")


class AnalysisError(ValueError):
    """Input the analysis cannot work with; the message names the fix."""


class ExperimentNotFound(AnalysisError):
    """No MLflow experiment of that name at that tracking URI."""


class NoRuns(AnalysisError):
    """The experiment exists but holds no finished run to analyse."""


class NoEnergyMetrics(AnalysisError):
    """Runs exist but none carries the energy metrics EnergyCallback logs."""


class TooFewRuns(AnalysisError):
    """Fewer runs than a correlation or a regression needs."""


class MissingData(AnalysisError):
    """A figure or table whose inputs these runs do not have (the message says which)."""
