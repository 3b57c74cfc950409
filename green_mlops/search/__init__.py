"""Energy-aware Optuna search over architectures and batch sizes, logged to MLflow.

Layered over the EnergyCallback: a :class:`Sweep` asks Optuna for points of a :class:`SearchSpace`,
hands each to a trial runner (which trains it), and ranks trials by accuracy against lifecycle energy.
"""
from green_mlops.search.budget import EnergyBudget
from green_mlops.search.cost import SearchCost, search_cost
from green_mlops.search.objectives import MODES, Objective, accuracy_per_kJ
from green_mlops.search.pruning import ParetoPruning
from green_mlops.search.ranking import format_table, knee_index, pareto_ranks, ranking_table
from green_mlops.search.space import SearchSpace, SpaceError, build_space
from green_mlops.search.storage import DEFAULT_STORAGE, StorageError, open_storage
from green_mlops.search.sweep import Sweep, SweepError, SweepReport, SweepSettings
from green_mlops.search.trial import TrialContext, TrialResult, TrialRunner

__all__ = [
    "DEFAULT_STORAGE", "MODES", "EnergyBudget", "Objective", "ParetoPruning", "SearchCost", "SearchSpace", "SpaceError", "StorageError", "Sweep",
    "SweepError", "SweepReport", "SweepSettings", "TrialContext", "TrialResult", "TrialRunner", "accuracy_per_kJ",
    "build_space", "format_table", "knee_index", "open_storage", "pareto_ranks", "ranking_table", "search_cost",
]
