"""The energy-aware search: space validation, ranking, budget, and whole sweeps with real parts.

Sweeps here use a real Optuna study (SQLite or journal file), a real MLflow SQLite store and real
Lightning training of small MLPs on digits (tests/search_runner.py).
"""
from __future__ import annotations

import io

import numpy as np
import optuna
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from mlflow.tracking import MlflowClient

from green_mlops.search import (
    EnergyBudget,
    Objective,
    SpaceError,
    StorageError,
    Sweep,
    SweepError,
    SweepSettings,
    build_space,
    knee_index,
    open_storage,
    pareto_ranks,
    ranking_table,
)
from green_mlops.search.plot import pareto_figure, pareto_plot
from green_mlops.search.ranking import KNEE_RULE, NO_KNEE_RULE, knee
from tests.search_runner import check_arch, run_trial


# -- the space ------------------------------------------------------------------------------------
def test_space_from_arguments_and_yaml(tmp_path):
    s = build_space("mlp16,mlp32", "32,64", lrs="0.01,0.1", check_arch=check_arch)
    assert s.is_grid and s.size() == 8
    assert s.grid()[0] == {"arch": "mlp16", "batch_size": 32, "lr": 0.01}
    f = tmp_path / "space.yaml"
    f.write_text("archs: [mlp16]\nbatch_sizes: [16, 32]\nlr_range: [0.001, 0.1]\n")
    s = build_space(config=f, check_arch=check_arch)
    assert not s.is_grid and s.lr_range == (0.001, 0.1) and s.batch_sizes == (16, 32)
    assert build_space("mlp8", None, config=f).archs == ("mlp8",)  # the command line wins


@pytest.mark.parametrize("kwargs, message", [
    ({"archs": "", "batch_sizes": "32"}, "no architectures"),
    ({"archs": "mlp8", "batch_sizes": ""}, "no batch sizes"),
    ({"archs": "mlp8", "batch_sizes": "0"}, "batch size must be ≥ 1"),
    ({"archs": "mlp8", "batch_sizes": "-4"}, "batch size must be ≥ 1"),
    ({"archs": "mlp8", "batch_sizes": "big"}, "not a whole number"),
    ({"archs": "mlp8", "batch_sizes": "8", "lrs": "0"}, "positive"),
    ({"archs": "mlp8", "batch_sizes": "8", "lr_range": "0.1:0.01"}, "LOW:HIGH"),
    ({"archs": "mlp8", "batch_sizes": "8", "lrs": "0.1", "lr_range": "0.01:0.1"}, "not both"),
    ({"archs": "resnet9000", "batch_sizes": "8"}, "unknown architecture"),
])
def test_space_errors_name_the_fix(kwargs, message):
    with pytest.raises((SpaceError, ValueError), match=message):
        build_space(check_arch=check_arch, **kwargs)


def test_space_file_errors(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        build_space(config=tmp_path / "nope.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("archs: [mlp8]\nbatch_sizes: [8]\nepochz: 3\n")
    with pytest.raises(SpaceError, match="unknown keys"):
        build_space(config=f)


# -- ranking and objectives -----------------------------------------------------------------------
def test_pareto_ranks_and_knee_on_a_known_front():
    acc = np.array([0.50, 0.80, 0.90, 0.70, 0.91, 0.60])
    energy = np.array([10.0, 20.0, 40.0, 30.0, 400.0, 50.0])
    # front: (10, .5) (20, .8) (40, .9) (400, .91); (30, .7) is dominated by (20, .8); (50, .6) by three
    assert list(pareto_ranks(acc, energy)) == [1, 1, 1, 2, 1, 3]
    front = [0, 1, 2, 4]
    assert front[knee_index(acc[front], energy[front])] == 2  # (40 J, 0.90): 10× the energy past it buys 0.01


def _front(e: list[float], a: list[float], e_lo: float = 100.0, decades: float = 2.0,
           a_lo: float = 0.80, a_span: float = 0.18) -> tuple[np.ndarray, np.ndarray]:
    """Accuracies and energies (J) whose normalised coordinates (a, log-energy) are exactly ``a`` and ``e``."""
    return a_lo + a_span * np.array(a), e_lo * 10 ** (decades * np.array(e))


def test_knee_is_the_point_farthest_above_the_chord_never_below():
    # the demo's shape: LeNet/64 sits 0.18 above the chord, MobileNet/64 0.45 below it (a - e, normalised)
    acc, energy = _front([0.0, 0.10, 0.80, 1.0], [0.0, 0.28, 0.35, 1.0])
    assert list(pareto_ranks(acc, energy)) == [1, 1, 1, 1]
    k, rule = knee(acc, energy)
    assert k == 1 and rule == KNEE_RULE  # LeNet/64, not MobileNet/64 (farther from the chord, but below it)
    # the knee is picked in log-energy: the same front with energies 10× apart per step keeps its knee
    acc, energy = _front([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.6, 0.8, 0.9, 1.0], decades=4)
    assert knee_index(acc, energy) == 1  # a - e: 0.35, 0.30, 0.15; the largest wins
    acc, energy = _front([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 0.3, 0.8, 0.85, 1.0], decades=4)
    assert knee_index(acc, energy) == 2  # a - e: 0.05, 0.30, 0.10


def test_a_front_with_no_point_above_the_chord_has_no_knee():
    acc, energy = _front([0.0, 0.5, 0.9, 1.0], [0.0, 0.2, 0.5, 1.0])  # every inner point below the chord
    k, rule = knee(acc, energy)
    assert rule == NO_KNEE_RULE and k == int(np.argmax(acc / energy)) == 0
    assert knee(acc[:2], energy[:2]) == (0, NO_KNEE_RULE)  # two points: no inner point, so no knee
    assert knee(np.array([]), np.array([]))[0] is None
    rows = [{"trial": i, "state": "COMPLETE", "feasible": True, "arch": "m", "batch_size": 8, "lr": 0.1,
             "accuracy": a, "lifecycle_J": e} for i, (a, e) in enumerate(zip(acc, energy))]
    t = ranking_table(rows)
    assert t.attrs["knee_rule"] == NO_KNEE_RULE and t.loc[t["knee"], "trial"].tolist() == [0]


def test_pareto_plot_legend_covers_no_point_label(tmp_path):
    acc, energy = _front([0.0, 0.10, 0.80, 1.0], [0.0, 0.28, 0.35, 1.0])
    names = ["lenet/128", "lenet/64", "mobilenet/64", "resnet18/64"]
    rows = [{"trial": i, "state": "COMPLETE", "feasible": True, "arch": n.split("/")[0],
             "batch_size": int(n.split("/")[1]), "lr": 0.05, "accuracy": a, "lifecycle_J": e}
            for i, (n, a, e) in enumerate(zip(names, acc, energy))]
    fig = pareto_figure(ranking_table(rows), "demo")
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    labels = [t for t in ax.texts if t.get_text() in names]
    assert len(labels) == 4
    for t in labels:
        assert not legend.overlaps(t.get_window_extent(renderer)), t.get_text()
    assert "knee" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert pareto_plot(ranking_table(rows), tmp_path / "p.png").stat().st_size > 10_000


def test_ranking_table_puts_feasible_front_first():
    rows = [
        {"trial": 0, "state": "COMPLETE", "feasible": True, "arch": "a", "batch_size": 8, "lr": 0.1,
         "accuracy": 0.9, "training_J": 100.0, "inference_J": 20.0, "lifecycle_J": 120.0},
        {"trial": 1, "state": "COMPLETE", "feasible": True, "arch": "b", "batch_size": 8, "lr": 0.1,
         "accuracy": 0.8, "training_J": 40.0, "inference_J": 10.0, "lifecycle_J": 50.0},
        {"trial": 2, "state": "COMPLETE", "feasible": False, "arch": "c", "batch_size": 8, "lr": 0.1,
         "accuracy": 0.95, "training_J": 10.0, "inference_J": 1.0, "lifecycle_J": 11.0},
        {"trial": 3, "state": "FAIL", "feasible": True, "arch": "d", "batch_size": 8, "lr": 0.1,
         "training_J": 5.0},
    ]
    t = ranking_table(rows)
    assert list(t["trial"]) == [1, 0, 2, 3]  # front by accuracy per kJ, then the infeasible, then the failed
    assert list(t["pareto_rank"][:2]) == [1, 1] and pd.isna(t["pareto_rank"][2])
    assert t["lifecycle_Wh"][0] == pytest.approx(50 / 3600)
    assert t["accuracy_per_kJ"][0] == pytest.approx(0.8 / 0.05)
    assert t["knee"].sum() == 1


def test_objective_modes():
    assert Objective("pareto").values(0.9, 2000.0) == [0.9, 2000.0]
    assert Objective("acc-per-kj").values(0.9, 2000.0) == [pytest.approx(0.45)]
    assert Objective("penalty", penalty_per_kwh=10).values(0.9, 3.6e5) == [pytest.approx(0.9 - 1.0)]
    assert Objective(inference_samples=1000).lifecycle_J(50.0, 0.01, default_samples=10) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="choose one of"):
        Objective("fastest")
    with pytest.raises(ValueError, match="inference-samples"):
        Objective(inference_samples=-1)


def test_budget_validation():
    for bad in (0, -1.0, float("inf"), "5"):
        with pytest.raises(ValueError, match="energy budget in joules must be a positive number"):
            EnergyBudget(bad)


def test_storage_errors_before_any_training(tmp_path):
    with pytest.raises(StorageError, match="reachable"):
        open_storage("postgresql://user:secret@127.0.0.1:1/nodb")
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path}/missing/study.db")
    with pytest.raises(StorageError, match="neither"):
        open_storage("studies.db")
    assert isinstance(open_storage(f"journal:{tmp_path}/study.log"), optuna.storages.JournalStorage)


# -- whole sweeps ---------------------------------------------------------------------------------
def settings(tmp_path, **kw) -> SweepSettings:
    base = dict(study="s", storage=f"sqlite:///{tmp_path}/study.db", experiment="sweep",
                tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", output_dir=tmp_path / "out", progress=False,
                heartbeat_s=5)
    base.update(kw)
    return SweepSettings(**base)


def test_grid_sweep_end_to_end_with_a_crashing_trial(tmp_path):
    space = build_space("mlp32,crash,mlp8", "64", check_arch=check_arch)
    err = io.StringIO()
    sweep = Sweep(space, settings(tmp_path), run_trial, stream=err)
    report = sweep.run()
    assert report.complete and report.trials_run_here == 3
    t = report.table
    assert sorted(t["arch"]) == ["crash", "mlp32", "mlp8"]
    done = t[t["state"] == "COMPLETE"]
    assert len(done) == 2 and (done["training_J"] > 0).all() and (done["inference_J"] > 0).all()
    assert (done["lifecycle_J"] == done["training_J"] + done["inference_J"]).all()
    assert done["pareto_rank"].min() == 1 and t["knee"].sum() == 1
    crashed = t[t["arch"] == "crash"].iloc[0]
    assert crashed["state"] == "FAIL" and "boom" in crashed["note"] and crashed["training_J"] > 0
    assert "trial 1 failed: RuntimeError: boom" in err.getvalue()
    assert report.csv_path.exists() and report.plot_path is not None and report.plot_path.exists()
    assert list(pd.read_csv(report.csv_path)["trial"]) == list(t["trial"])

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("sweep")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("green_mlops.sweep.role") == "parent"]
    trials = [r for r in runs if r.data.tags.get("green_mlops.sweep.role") == "trial"]
    assert len(parent) == 1 and len(trials) == 3
    pid = parent[0].info.run_id
    assert parent[0].info.status == "FINISHED" and parent[0].data.params["space.archs"] == "mlp32,crash,mlp8"
    assert {a.path for a in client.list_artifacts(pid)} >= {"ranking.csv", "pareto.png"}
    by_arch = {r.data.params["arch"]: r for r in trials}
    assert all(r.data.tags["mlflow.parentRunId"] == pid for r in trials)
    assert by_arch["crash"].info.status == "FAILED" and by_arch["crash"].data.metrics["energy/fit_J"] > 0
    ok = by_arch["mlp32"]
    assert ok.info.status == "FINISHED"
    for key in ("energy/total_J", "energy/lifecycle_J", "energy/training_J", "accuracy_per_kJ", "val_acc",
                "green_mlops/energy_per_sample_inference_J"):
        assert key in ok.data.metrics, key
    steps = sorted(m.step for m in client.get_metric_history(ok.info.run_id, "energy/total_J"))
    assert steps and steps == list(range(1, len(steps) + 1))  # energy at every training step
    assert any(k.startswith("green_mlops.hw.") for k in ok.data.tags)


def test_energy_budget_stops_a_trial_and_marks_it_infeasible(tmp_path):
    space = build_space("mlp64", "16", check_arch=check_arch)
    report = Sweep(space, settings(tmp_path, energy_budget_J=1e-3, profile_steps=10), run_trial,
                   stream=io.StringIO()).run()
    row = report.table.iloc[0]
    assert row["state"] == "COMPLETE" and not row["feasible"] and pd.isna(row["pareto_rank"])
    assert row["predicted_training_J"] > 1e-3 and "exceeds the budget" in row["note"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/study.db")
    assert study.trials[0].constraints["energy_budget"] > 0


def test_a_second_worker_joins_and_plan_mismatch_is_refused(tmp_path):
    space = build_space("mlp8", "64", check_arch=check_arch)
    Sweep(space, settings(tmp_path), run_trial, stream=io.StringIO()).run()
    again = Sweep(space, settings(tmp_path), run_trial, stream=io.StringIO())
    assert not again.created and again.run().trials_run_here == 0  # nothing left: every trial ran once
    with pytest.raises(SweepError, match="another plan"):
        Sweep(build_space("mlp16", "64", check_arch=check_arch), settings(tmp_path), run_trial)
    # what a trial is (dataset, epochs, ...) is part of the plan: a rerun on other data is refused, not reprinted
    with pytest.raises(SweepError, match=r"(?s)dataset: study has '\(not recorded\)', this run has 'cifar10'.*--study s-2"):
        Sweep(space, settings(tmp_path, run_params={"dataset": "cifar10", "epochs": 1}), run_trial)


def test_sampled_sweep_with_a_journal_storage(tmp_path):
    space = build_space("mlp8,mlp16", "64,128", lr_range="0.01:0.5", check_arch=check_arch)
    with pytest.raises(SweepError, match="--n-trials"):
        Sweep(space, settings(tmp_path, storage=f"journal:{tmp_path}/j.log"), run_trial)
    report = Sweep(space, settings(tmp_path, storage=f"journal:{tmp_path}/j.log", n_trials=2,
                                   objective=Objective("acc-per-kj")), run_trial, stream=io.StringIO()).run()
    assert len(report.table) == 2 and (report.table["state"] == "COMPLETE").all()
    assert report.table["lr"].between(0.01, 0.5).all()


def test_under_mlflow_run_the_project_run_is_the_parent_only_in_the_sweeps_experiment(tmp_path, monkeypatch):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    project = client.create_run(client.create_experiment("sweep")).info.run_id  # as `mlflow run` creates it
    monkeypatch.setenv("MLFLOW_RUN_ID", project)
    space = build_space("mlp8", "64", check_arch=check_arch)
    assert Sweep(space, settings(tmp_path), run_trial, stream=io.StringIO()).parent_id == project
    # `mlflow run` without --experiment-name: its run is in Default; the sweep still goes to its own experiment
    other = client.create_run("0").info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", other)
    sweep = Sweep(space, settings(tmp_path, study="s2"), run_trial, stream=io.StringIO())
    parent = client.get_run(sweep.parent_id)
    assert parent.info.experiment_id == client.get_experiment_by_name("sweep").experiment_id
    assert parent.data.tags["green_mlops.sweep.project_run"] == other
    tags = client.get_run(other).data.tags
    assert tags["green_mlops.sweep.experiment"] == "sweep" and tags["green_mlops.sweep.parent_run"] == sweep.parent_id
