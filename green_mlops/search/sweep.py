"""Run (or join) a sweep: the worker loop every `green-mlops sweep` process runs against a shared study.

The first worker creates the study and, for a finite space, queues every grid point once; workers then pop
queued trials until none are left (one worker each); with ``n_trials`` set, they sample new points instead.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from green_mlops import names
from green_mlops.argtypes import check_whole
from green_mlops.mlflow.context import hardware_tags
from green_mlops.outputs import writable_dir
from green_mlops.redact import redact_uri
from green_mlops.search.aware import EnergyAware, PruneState, deferrals
from green_mlops.search.budget import EnergyBudget
from green_mlops.search.cost import SPENT_ATTR, SearchCost, search_cost, spent_J
from green_mlops.search.heartbeat import heartbeat
from green_mlops.search.objectives import Objective, accuracy_per_kJ
from green_mlops.search.plot import pareto_plot
from green_mlops.search.predict import Features, check_defer_margin
from green_mlops.search.pruning import DEFAULT_MARGIN, SAMPLES_ATTR, check_every, check_margin
from green_mlops.search.ranking import format_table, ranking_table
from green_mlops.search.results import trial_rows
from green_mlops.search.space import SearchSpace
from green_mlops.search.storage import DEFAULT_STORAGE, open_storage, supports_heartbeat
from green_mlops.search.tracking import RUN_ATTR, SweepTracking
from green_mlops.search.trial import TrialContext, TrialResult, TrialRunner

log = logging.getLogger(__name__)
PLAN_ATTR = "green_mlops_plan"
READY_ATTR = "green_mlops_queued"


class SweepError(RuntimeError):
    """The sweep cannot start or join; the message says why and what to do."""


@dataclass
class SweepSettings:
    """Everything about a sweep except its space. ``n_trials`` None runs the whole grid."""

    study: str = "green-mlops-sweep"
    storage: str = DEFAULT_STORAGE
    experiment: str = "green-mlops-sweep"
    tracking_uri: str | None = None
    objective: Objective = field(default_factory=Objective)
    n_trials: int | None = None
    energy_budget_J: float | None = None
    profile_steps: int = 20
    heartbeat_s: int = 60
    seed: int = 0
    output_dir: Path = Path("green_mlops_sweep")
    progress: bool = True
    run_params: dict[str, Any] = field(default_factory=dict)
    prune: bool = False
    prune_margin: float | str | None = DEFAULT_MARGIN
    prune_every: float = 1.0
    defer_margin: float | None = None

    def validate(self) -> None:
        """Raise ValueError for bad settings, before any storage is opened or training starts."""
        check_whole("--n-trials", self.n_trials, 1, allow_none=True)
        if self.energy_budget_J is not None:
            EnergyBudget(self.energy_budget_J, self.profile_steps)
        check_margin(self.prune_margin)
        check_defer_margin(self.defer_margin)
        check_every(self.prune_every)
        if not self.study or not self.experiment:
            raise ValueError("--study and --experiment need a name")


@dataclass
class SweepReport:
    """The outcome as this worker saw it at its end; ``complete`` when no trial is queued or running."""

    table: pd.DataFrame
    csv_path: Path
    plot_path: Path | None
    parent_run_id: str
    complete: bool
    ui_hint: str
    trials_run_here: int
    cost: SearchCost | None = None


class Sweep:
    """One worker of a sweep. ``runner`` trains a configuration (see :mod:`green_mlops.search.trial`)."""

    def __init__(self, space: SearchSpace, settings: SweepSettings, runner: TrialRunner,
                 stream: TextIO | None = None, features: Features | None = None) -> None:
        settings.validate()
        writable_dir(settings.output_dir, "output folder")  # before any store is opened or trial trained
        features = features or getattr(runner, "features", None)
        if settings.defer_margin is not None and features is None:
            raise SweepError("--predict-defer-margin needs model characteristics of untried points; this trial "
                             "runner has no features(params) method (pass features= to Sweep)")
        self.aware = EnergyAware(settings.objective, settings.prune, settings.prune_margin, settings.prune_every,
                                 settings.defer_margin, features)
        self.space, self.settings, self.runner = space, settings, runner
        self.stream = stream if stream is not None else sys.stderr  # looked up now: sys.stderr can be replaced
        self.objective = settings.objective
        self.tracking = SweepTracking(settings.experiment, settings.tracking_uri)
        self.storage = open_storage(settings.storage, settings.heartbeat_s, on_stale_trial=self._stale_trial_failed)
        self.grid = space.is_grid and (settings.n_trials is None or settings.n_trials >= space.size())
        if not self.grid and settings.n_trials is None:
            raise SweepError("a learning-rate range has infinitely many points: give --n-trials N")
        self.study, self.created = self._open_study()
        self.parent_id = self.tracking.parent_run(self.study, self.storage, self._parent_params())
        self._hw = hardware_tags()

    # -- study --------------------------------------------------------------------------------------
    def _plan(self) -> dict[str, Any]:
        """What makes two workers' trials comparable: the space, the objective and every option that changes
        what a trial is (dataset, epochs, steps, ... from ``run_params``). A study is joined only with the same."""
        s = self.settings
        return {**self.space.describe(), "mode": self.objective.mode, "objective": self.objective.describe(),
                "grid": self.grid, "n_trials": int(self.space.size()) if self.grid else s.n_trials,
                "inference_samples": self.objective.inference_samples, "energy_budget_J": s.energy_budget_J,
                "profile_steps": s.profile_steps if s.energy_budget_J else None, **s.run_params}

    def _parent_params(self) -> dict[str, Any]:
        s = self.settings
        return {**self._plan(), "study": s.study, "storage": redact_uri(s.storage), "prune": s.prune,
                "prune_margin": s.prune_margin, "prune_every": s.prune_every, "predict_defer_margin": s.defer_margin}

    def _open_study(self) -> tuple[optuna.Study, bool]:
        s = self.settings
        sampler = (optuna.samplers.NSGAIISampler(seed=s.seed) if self.objective.mode == "pareto"
                   else optuna.samplers.TPESampler(seed=s.seed))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(study_name=s.study, storage=self.storage, sampler=sampler,
                                        directions=self.objective.directions)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=s.study, storage=self.storage, sampler=sampler)
            created = False
        if [d.name.lower() for d in study.directions] != self.objective.directions:
            raise SweepError(f"study {s.study!r} already exists with other objectives "
                             f"({[d.name.lower() for d in study.directions]}); use another --study name")
        plan = self._plan()
        if created:
            study.set_user_attr(PLAN_ATTR, plan)
            if self.grid:
                for point in self.space.grid():
                    study.enqueue_trial(point, skip_if_exists=True)
            study.set_user_attr(READY_ATTR, True)
        else:
            stored = study.user_attrs.get(PLAN_ATTR)
            if stored is not None and stored != plan:
                differs = "\n".join(f"  {k}: study has {stored.get(k, '(not recorded)')!r}, this run has "
                                     f"{plan.get(k, '(not set)')!r}" for k in sorted(set(stored) | set(plan))
                                     if stored.get(k) != plan.get(k))
                raise SweepError(f"study {s.study!r} was created with another plan; its trials would "
                                 f"not be comparable with this run's:\n{differs}\nStart a new study with another "
                                 f"--study name (e.g. --study {s.study}-2), or join this one with its settings")
            deadline = time.monotonic() + 60
            while not optuna.load_study(study_name=s.study, storage=self.storage).user_attrs.get(READY_ATTR):
                if time.monotonic() > deadline:
                    raise SweepError(f"study {s.study!r} exists but its first worker never finished queuing trials")
                time.sleep(0.5)
        return study, created

    def _pop_queued(self) -> optuna.Trial | None:
        """Take one queued trial; the storage's state change makes sure no other worker gets it."""
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        waiting = self.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        for t in self.aware.order(self.study, list(waiting)):
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                if self.storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    self.study.get_trials(deepcopy=False)  # the study's cached storage learns the new state
                    trial = optuna.Trial(self.study, trial_id)
                    rec = self.aware.defer(self.study, trial, t)
                    if rec is None:
                        return trial
                    print(f"trial {t.number}: deferred {rec['params']}: predicted {rec['predicted_lifecycle_J']:.4g} J, "
                          f"dominated by trial {rec['dominated_by']}", file=self.stream, flush=True)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def _next_trial(self) -> optuna.Trial | None:
        if supports_heartbeat(self.storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
        trial = self._pop_queued()
        if trial is None and not self.grid:
            if len(self.study.get_trials(deepcopy=False)) < (self.settings.n_trials or 0):
                trial = self.study.ask()
        return trial

    def _stale_trial_failed(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ATTR)
        if run_id:
            try:
                self.tracking.log_result(run_id, {}, {names.SWEEP_ERROR: "worker stopped responding "
                                                      "(no Optuna heartbeat); energy up to then is in this run"},
                                         "FAILED")
            except Exception as exc:  # the study must go on
                log.warning("could not mark MLflow run %s failed: %s", run_id, exc)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> SweepReport:
        """Work until no trial is left for this worker, then write the ranking (and, if done, log it)."""
        total = int(self.space.size()) if self.grid else int(self.settings.n_trials or 0)
        bar = _progress(total, self.settings.progress, self.stream)
        ran = 0
        try:
            while (trial := self._next_trial()) is not None:
                self._run_trial(trial)
                ran += 1
                self._update(bar)
            self._wait_for_others(bar)
        finally:
            if bar is not None:
                bar.close()
        return self.report(ran)

    def _update(self, bar: Any) -> None:
        if bar is not None:
            bar.n = sum(t.state.is_finished() for t in self.study.get_trials(deepcopy=False))
            bar.refresh()

    def _wait_for_others(self, bar: Any) -> None:
        """With heartbeats, wait for other workers' trials to finish (or be failed as stale), then rank."""
        if not supports_heartbeat(self.storage):
            return
        while any(t.state == TrialState.RUNNING for t in self.study.get_trials(deepcopy=False)):
            time.sleep(min(5.0, self.settings.heartbeat_s))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)
            self._update(bar)

    def _run_trial(self, trial: optuna.Trial) -> None:
        params = self.space.suggest(trial)
        run_id = self.tracking.trial_run(self.parent_id, self.study.study_name, trial.number,
                                         {**params, **self.settings.run_params}, self._hw)
        trial.set_user_attr(RUN_ATTR, run_id)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        budget = (EnergyBudget(self.settings.energy_budget_J, self.settings.profile_steps)
                  if self.settings.energy_budget_J else None)
        report, pruning, prune_cbs = self.aware.reporter(self.study, trial)
        ctx = TrialContext(trial.number, params, run_id, self.tracking.tracking_uri,
                           [*([budget] if budget else []), *prune_cbs],
                           (lambda: budget.over_budget) if budget else (lambda: False), report)
        print(f"trial {trial.number}: {params}", file=self.stream, flush=True)
        try:
            with self._heartbeat(trial):
                result = self.runner(ctx)
        except KeyboardInterrupt:
            self._fail(trial, run_id, "interrupted (Ctrl-C)", status="KILLED")
            raise
        except Exception as exc:  # a crashing or out-of-memory trial must not end the search
            self._fail(trial, run_id, f"{type(exc).__name__}: {exc}")
            return
        self._complete(trial, run_id, result, budget, pruning)

    def _complete(self, trial: optuna.Trial, run_id: str, r: TrialResult, budget: EnergyBudget | None,
                  pruning: PruneState | None = None) -> None:
        overhead = r.overhead_J or (pruning.overhead_J if pruning is not None else 0.0)  # the pruner's passes
        training_J = r.training_J - overhead  # the model's training; the extra validations are the search's
        lifecycle = self.objective.lifecycle_J(training_J, r.inference_J_per_sample, r.inference_samples)
        inference_J = lifecycle - training_J
        attrs: dict[str, Any] = {"accuracy": r.accuracy, "training_J": training_J, "overhead_J": overhead,
                                 "inference_J_per_sample": r.inference_J_per_sample, SAMPLES_ATTR: r.accuracy_samples,
                                 "inference_samples": r.inference_samples, "inference_J": inference_J,
                                 "lifecycle_J": lifecycle, "duration_s": r.duration_s, "steps": r.steps,
                                 "methods": r.methods, "notes": r.notes,
                                 SPENT_ATTR: spent_J(r.training_J, r.inference_J_per_sample, r.inference_samples)}
        feasible = True
        if budget is not None:
            predicted = max(budget.predicted_J or 0.0, training_J)
            attrs["predicted_training_J"] = predicted
            over = (predicted + inference_J if budget.over_budget else lifecycle) - budget.budget_J
            trial.set_constraint("energy_budget", over)
            feasible = over <= 0
            if budget.over_budget:
                attrs["notes"] = [*r.notes, f"stopped at step {budget.stopped_at_step}: predicted training energy "
                                  f"{predicted:.0f} J exceeds the budget of {budget.budget_J:.0f} J"]
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        metrics = {"accuracy": r.accuracy, names.TRAINING_J: training_J, names.INFERENCE_J: inference_J,
                   names.LIFECYCLE_J: lifecycle, names.INFERENCE_J_PER_SAMPLE: r.inference_J_per_sample,
                   names.PREDICTED_TRAINING_J: attrs.get("predicted_training_J"),
                   "accuracy_per_kJ": accuracy_per_kJ(r.accuracy, lifecycle) if r.accuracy is not None else None}
        pruned = pruning is not None and pruning.verdict is not None
        tags = {names.SWEEP_FEASIBLE: str(feasible).lower(),
                **({names.SWEEP_PRUNED: pruning.verdict["note"]} if pruned else {})}  # type: ignore[index]
        self.tracking.log_result(run_id, metrics, tags, "FINISHED")
        if pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
            print(f"trial {trial.number}: {pruning.verdict['note']}", file=self.stream, flush=True)  # type: ignore
            return
        if r.accuracy is None or not math.isfinite(r.accuracy):
            self.study.tell(trial, state=TrialState.FAIL)
            print(f"trial {trial.number}: no accuracy was measured (is a validation set given?)", file=self.stream)
            return
        self.study.tell(trial, self.objective.values(r.accuracy, lifecycle))
        print(f"trial {trial.number}: accuracy {r.accuracy:.4f}, lifecycle {lifecycle:.1f} J"
              + ("" if feasible else " (over the energy budget)"), file=self.stream, flush=True)

    def _fail(self, trial: optuna.Trial, run_id: str, why: str, status: str = "FAILED") -> None:
        spent = self.tracking.metric(run_id, names.energy("fit"))
        trial.set_user_attr("error", why[:2000])
        for key in ("training_J", SPENT_ATTR) if spent is not None else ():
            trial.set_user_attr(key, spent)
        try:
            self.tracking.log_result(run_id, {}, {names.SWEEP_ERROR: why[:5000]}, status)
        except Exception as exc:
            log.warning("could not mark MLflow run %s: %s", run_id, exc)
        self.study.tell(trial, state=TrialState.FAIL)
        print(f"trial {trial.number} failed: {why}" + (f" ({spent:.1f} J spent, logged)" if spent else ""),
              file=self.stream, flush=True)
        _free_gpu_memory()

    def _heartbeat(self, trial: optuna.Trial) -> AbstractContextManager[None]:
        return heartbeat(self.storage, self.study, trial, self.settings.heartbeat_s)

    # -- results ------------------------------------------------------------------------------------
    def trials_frame(self) -> pd.DataFrame:
        """Every trial of the study so far, ranked."""
        return ranking_table(trial_rows(self.study))

    def report(self, ran: int = 0) -> SweepReport:
        """Write ranking.csv and pareto.png; log them on the parent run once the study is complete."""
        table = self.trials_frame()
        out = Path(self.settings.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv = out / "ranking.csv"
        table.to_csv(csv, index=False)
        plot = pareto_plot(table, out / "pareto.png", title=f"{self.study.study_name}: {self.objective.describe()}")
        cost = search_cost(table)
        cost_json = out / "search_cost.json"
        cost_json.write_text(json.dumps({"cost": asdict(cost), "deferrals": deferrals(self.study)}, indent=1,
                                        default=str))
        busy = any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in self.study.get_trials(deepcopy=False))
        if not busy:
            from green_mlops.mlflow.uploads import upload_artifacts

            upload_artifacts(self.tracking.client, self.parent_id, [csv, cost_json, *([plot] if plot else [])], None)
            done = table[table["state"] == "COMPLETE"]
            best = done.iloc[0] if len(done) else None
            metrics = {"trials_complete": float(len(done)),
                       "trials_failed": float((table["state"] == "FAIL").sum()), **cost.metrics()}
            if best is not None:
                metrics["best_accuracy_per_kJ"] = float(best["accuracy_per_kJ"])
            self.tracking.log_result(self.parent_id, metrics, {}, "FINISHED")
        return SweepReport(table, csv, plot, self.parent_id, not busy, self.tracking.ui_hint(self.parent_id), ran,
                           cost)

    def summary(self, report: SweepReport) -> str:
        """The text printed at the end: the table, where the files are, how to see it in MLflow."""
        lines = [format_table(report.table), "",
                 "pareto_rank 1 = the accuracy/energy front (feasible, complete trials); "
                 "lifecycle = training + inference per sample × serving volume",
                 *([f"* = {report.table.attrs['knee_rule']}"] if report.table.attrs.get("knee_rule") else []),
                 f"ranking: {report.csv_path}" + (f"   plot: {report.plot_path}" if report.plot_path else "")]
        if report.cost is not None:
            lines.append(report.cost.describe() + f" (details: {report.csv_path.parent / 'search_cost.json'})")
        if not report.complete:
            lines.append("other workers are still running trials; the last worker to finish logs the final ranking")
        lines.append(report.ui_hint)
        return "\n".join(lines)


def _progress(total: int, enabled: bool, stream: TextIO) -> Any:
    if not enabled or total <= 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="trial", file=stream, leave=True)


def _free_gpu_memory() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # best effort after a failed trial
        pass
