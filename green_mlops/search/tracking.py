"""MLflow runs of a sweep: one parent run per study, shared by every worker; one nested run per trial."""
from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from green_mlops import names
from green_mlops.redact import redact_text, redact_uri

ROLE = names.SWEEP_ROLE
STUDY = names.SWEEP_STUDY
TRIAL = names.SWEEP_TRIAL
PARENT_ATTR = "mlflow_parent_run_id"
RUN_ATTR = "mlflow_run_id"
PROJECT_RUN = names.SWEEP_PROJECT_RUN
SWEEP_EXPERIMENT = names.SWEEP_EXPERIMENT
SWEEP_PARENT = names.SWEEP_PARENT_RUN
log = logging.getLogger(__name__)
FIRST_USE_WAIT_S = 180.0  # MLflow's migrations take ~25 s on two busy cores; a racing worker waits this long at most
STILL_S = 15.0  # a half-migrated schema unchanged this long has no one migrating it: finish it
# what SQLite (or SQLAlchemy reflecting a table another worker is rebuilding mid-migration) says when another
# worker is creating MLflow's schema in the same fresh file at the same moment
_SCHEMA_RACE = re.compile(r"duplicate column name|already exists|database is locked|no such table|no such column|"
                          r"online migration expected|circular dependency detected|no such index", re.IGNORECASE)
_STALE_SCHEMA = re.compile(r"out-of-date database schema", re.IGNORECASE)
T = TypeVar("T")


class SweepTracking:
    """Creates and finds the sweep's MLflow runs. ``tracking_uri`` None means MLflow's default."""

    def __init__(self, experiment: str, tracking_uri: str | None = None) -> None:
        import mlflow

        from green_mlops.mlflow.uploads import fast_failing

        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        try:
            with fast_failing():  # a dead server is refused in seconds, not after MLflow's minutes of retries
                self.client = first_use(lambda: MlflowClient(tracking_uri), self.tracking_uri)  # opens the store
                self.tracking_uri = self.client.tracking_uri
                self.experiment_id = first_use(lambda: self._experiment_id(experiment), self.tracking_uri)
        except Exception as exc:  # surface any connection problem before training
            why = redact_text(str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "", self.tracking_uri)
            raise ConnectionError(f"cannot reach MLflow tracking at {redact_uri(self.tracking_uri)} "
                                  f"({type(exc).__name__}: {why}); start the server (mlflow server ...) or pass "
                                  "--tracking-uri") from None
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
        except Exception:  # a lookup for a report; absence is fine
            return None

    def ui_hint(self, parent_id: str) -> str:
        """How to look at the sweep in the MLflow UI."""
        uri = redact_uri(self.tracking_uri)
        if uri.startswith("http"):
            return f"MLflow UI: {uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{parent_id}"
        return (f"MLflow UI: run `mlflow ui --backend-store-uri {uri}` and open http://127.0.0.1:5000, "
                f"experiment {self.experiment!r}, run 'sweep …' (its trials are nested under it)")


def first_use(call: Callable[[], T], tracking_uri: str) -> T:
    """``call()``, retried while another worker creates MLflow's schema in the same fresh SQLite file.

    MLflow creates its tables and runs its migrations the first time a process opens an empty
    database; two processes doing so at once make one fail (``duplicate column name: step``), then
    see a half-migrated schema until the other is done. So: wait and try again; should the schema
    stay half-migrated (both failed), finish it with ``mlflow db upgrade``, as MLflow's message asks.
    """
    deadline = time.monotonic() + FIRST_USE_WAIT_S
    raced, revision, since, attempt = False, None, time.monotonic(), 0
    while True:
        try:
            return call()
        except Exception as exc:  # only the schema race is retried; the rest is re-raised
            stale = raced and _matches(exc, _STALE_SCHEMA)
            if not (str(tracking_uri).startswith("sqlite") and (stale or _matches(exc, _SCHEMA_RACE))) \
                    or time.monotonic() > deadline:
                raise
            raced = True
            if stale:
                now = _schema_revision(tracking_uri)
                if now != revision:
                    revision, since = now, time.monotonic()
                elif time.monotonic() - since > STILL_S:
                    subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", tracking_uri],
                                   capture_output=True, timeout=300, check=False)
                    since = time.monotonic()
            attempt += 1
            time.sleep(0.5 + random.random() * min(attempt, 4))


def _matches(exc: BaseException, pattern: re.Pattern) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if pattern.search(str(e)):
            return True
        e = e.__cause__ or e.__context__
    return False


def _schema_revision(sqlite_uri: str) -> str | None:
    """The alembic revision MLflow's schema is at in a SQLite file (None when unreadable)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(sqlite_uri.removeprefix("sqlite:///"), timeout=1)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    except sqlite3.Error:
        return None
