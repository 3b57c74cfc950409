"""MLflow runs of a sweep: one parent run per study, shared by every worker; one nested run per trial."""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

ROLE = "green_mlops.sweep.role"
STUDY = "green_mlops.sweep.study"
TRIAL = "green_mlops.sweep.trial"
PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"
PROJECT_RUN = "green_mlops.sweep.project_run"  # on the parent: the `mlflow run` run that started the sweep
SWEEP_EXPERIMENT = "green_mlops.sweep.experiment"  # on that project run: where the sweep's runs are
SWEEP_PARENT = "green_mlops.sweep.parent_run"
log = logging.getLogger(__name__)


class SweepTracking:
    """Creates and finds the sweep's MLflow runs. ``tracking_uri`` None means MLflow's default."""

    def __init__(self, experiment: str, tracking_uri: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri)
        self.tracking_uri = self.client.tracking_uri
        try:
            self.experiment_id = self._experiment_id(experiment)
        except Exception as exc:  # noqa: BLE001 - surface any connection problem before training
            raise ConnectionError(f"cannot reach MLflow tracking at {self.tracking_uri}: {exc}\n"
                                  "Start the server (mlflow server ...) or pass --tracking-uri") from None
        self.experiment = experiment

    def _experiment_id(self, name: str) -> str:
        """The experiment's id, creating it; another worker creating it at the same moment is fine."""
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def parent_run(self, study: optuna.Study, storage: optuna.storages.BaseStorage, params: dict[str, Any]) -> str:
        """The study's parent run: created by the first worker, found by the others (via the study)."""
        existing = study.user_attrs.get(PARENT_ATTR)
        if existing:
            self.experiment_id = self.client.get_run(existing).info.experiment_id
            return existing
        tags = {ROLE: "parent", STUDY: study.study_name}
        project, same_experiment = self._project_run()
        adopted = project if same_experiment else None
        if adopted:
            for k, v in tags.items():
                self.client.set_tag(adopted, k, v)
            mine = adopted
        else:
            link = {PROJECT_RUN: project} if project else {}
            run = self.client.create_run(self.experiment_id, tags={**tags, **link,
                                                                   "mlflow.runName": f"sweep {study.study_name}"})
            mine = run.info.run_id
            if project:
                self._point_to(project, mine)
        study.set_user_attr(PARENT_ATTR, mine)
        time.sleep(1.0)  # let a worker that started at the same moment write its own id, then agree on one
        chosen = optuna.load_study(study_name=study.study_name, storage=storage).user_attrs[PARENT_ATTR]
        if chosen != mine:
            if not adopted:
                self.client.delete_run(mine)
                if project:
                    self._point_to(project, chosen)
            self.experiment_id = self.client.get_run(chosen).info.experiment_id
            return chosen
        self.client.log_batch(mine, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return mine

    def _project_run(self) -> tuple[str | None, bool]:
        """Under ``mlflow run`` (MLFLOW_RUN_ID set): the project's run, and whether it is in this sweep's experiment.

        If it is, it becomes the sweep's parent. When ``mlflow run`` put it in another experiment (its
        default, ``Default``), the sweep still goes to the experiment it was given, where ``report``
        looks, and the project run only points there (see :meth:`_point_to`).
        """
        run_id = os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            return None, False
        try:
            return run_id, self.client.get_run(run_id).info.experiment_id == self.experiment_id
        except MlflowException:
            return None, False  # a run of another tracking store: neither adopted nor tagged

    def _point_to(self, project_run: str, parent: str) -> None:
        """Tag the ``mlflow run`` project run with where the sweep's runs went (another experiment)."""
        note = (f"The sweep's runs are in MLflow experiment {self.experiment!r} (id {self.experiment_id}), under "
                f"run {parent}; `green-mlops report --experiment {self.experiment}` analyses them.")
        try:
            self.client.log_batch(project_run, tags=[RunTag(SWEEP_EXPERIMENT, self.experiment),
                                                     RunTag(SWEEP_PARENT, parent), RunTag("mlflow.note.content", note)])
        except MlflowException as exc:
            log.warning("could not tag the project run %s: %s", project_run, exc)

    def trial_run(self, parent_id: str, study_name: str, number: int, params: dict[str, Any],
                  extra_tags: dict[str, str]) -> str:
        """A nested run for one trial, tagged so the UI shows it under the study's parent run."""
        name = f"trial {number}: {params.get('arch')} bs{params.get('batch_size')}"
        tags = {"mlflow.parentRunId": parent_id, ROLE: "trial", STUDY: study_name, TRIAL: str(number),
                "mlflow.runName": name, **extra_tags}
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run.info.run_id

    def log_result(self, run_id: str, metrics: dict[str, float], tags: dict[str, str], status: str) -> None:
        """The trial's summary metrics, then its final status."""
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()
                                               if v is not None and v == v],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status)

    def metric(self, run_id: str, key: str) -> float | None:
        """A run's latest value of one metric, if logged."""
        try:
            return self.client.get_run(run_id).data.metrics.get(key)
        except Exception:  # noqa: BLE001 - a lookup for a report; absence is fine
            return None

    def ui_hint(self, parent_id: str) -> str:
        """How to look at the sweep in the MLflow UI."""
        uri = self.tracking_uri
        if uri.startswith("http"):
            return f"MLflow UI: {uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{parent_id}"
        return (f"MLflow UI: run `mlflow ui --backend-store-uri {uri}` and open http://127.0.0.1:5000, "
                f"experiment {self.experiment!r}, run 'sweep …' (its trials are nested under it)")
