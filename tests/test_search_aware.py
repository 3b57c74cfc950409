"""The energy-aware search on digits: the pruner against the front, and what the search itself cost.

Real parts: an Optuna SQLite study, a MLflow SQLite store, Lightning training of small MLPs on digits
(tests/search_runner.py). Deferrals by the predictor are tested on recorded results, where energies are
known exactly (tests/test_search_efficiency.py).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from green_mlops import names
from green_mlops.search import Sweep, SweepSettings, build_space
from green_mlops.search.margins import Curve, remaining_gain, tie
from green_mlops.search.objectives import Objective
from green_mlops.search.predict import GAIN_QUANTILE, MIN_ANALOGUES, Planner, prediction_bound
from green_mlops.search.pruning import FrontPoint, ParetoPruning, check_margin, judge, project_J
from tests.mlflow_server import MlflowServer
from tests.postgres import PostgresServer
from tests.search_runner import check_arch, run_trial

ROOT = Path(__file__).resolve().parents[1]


def settings(tmp_path, **kw):
    return SweepSettings(study="aware", storage=f"sqlite:///{tmp_path}/study.db", experiment="aware",
                         tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", output_dir=tmp_path / "out",
                         progress=False, **kw)


def test_judge_prunes_only_what_a_cheaper_front_point_beats_even_with_the_margin():
    front = [FrontPoint(0, 0.90, 100.0), FrontPoint(1, 0.97, 1000.0)]
    v = judge(front, 5, 0.50, 150.0, 0.05)
    assert v.prune and v.dominated_by == 0 and v.best_case_accuracy == pytest.approx(0.55)
    assert not judge(front, 5, 0.50, 90.0, 0.05).prune  # cheaper than every front point
    assert not judge(front, 5, 0.86, 150.0, 0.05).prune  # 0.86 + margin reaches 0.90
    assert judge(front, 5, 0.91, 2000.0, 0.05).dominated_by == 1
    assert project_J(10.0, 5, 50) == 100.0 and project_J(10.0, 5, None) == 10.0
    with pytest.raises(ValueError, match="--prune-margin"):
        check_margin(1.5)
    with pytest.raises(ValueError, match="--prune-margin"):
        check_margin("lots")
    assert check_margin("auto") is None and check_margin("0.02") == 0.02
    with pytest.raises(ValueError, match="--prune-every"):
        ParetoPruning(lambda *a: False, every=0)


def test_auto_margin_learns_the_gain_from_the_studys_curves_and_ties_go_to_the_cheaper_trial():
    # two finished trials: one gained 0.10 after a quarter of its steps, the other 0.02
    found = [Curve(0.90, ((0.25, 0.80), (0.5, 0.86), (1.0, 0.90))), Curve(0.95, ((0.25, 0.93), (1.0, 0.95)))]
    assert remaining_gain(found, 0.25) == pytest.approx(0.10) and remaining_gain(found, 0.5) == pytest.approx(0.04)
    assert remaining_gain(found[:1], 0.25) is None  # one curve is not enough to bound what a trial may still gain
    assert remaining_gain(found, 0.1) is None  # nobody reported that early
    # the tie: two standard errors of a difference of accuracies on 10,000 samples each (binomial)
    assert tie(0.99, 0.99, 10_000, 0.0) == pytest.approx(2 * (2 * 0.99 * 0.01 / 10_000) ** 0.5)
    assert tie(0.9, 0.9, None, 0.5) == pytest.approx(0.01)  # no sample count: 2 % of the accuracy spread
    front = [FrontPoint(0, 0.990, 100.0, 10_000)]
    eps = lambda p, best: tie(p.accuracy, best, p.samples, 0.0)  # noqa: E731
    assert judge(front, 5, 0.991, 150.0, 0.0, eps).prune  # 0.001 better: within the tie, and dearer
    assert not judge(front, 5, 0.991, 150.0, 0.0).prune  # without the tie it would be kept
    assert not judge(front, 5, 0.999, 150.0, 0.0, eps).prune  # clearly better: kept
    assert not judge(front, 5, 0.985, 90.0, 0.0, eps).prune  # cheaper than the front point: kept

    # a quarter of 391 steps is step 97 (0.248): the same validation as a quarter of 196 (0.25), by one step
    quarter = [Curve(0.90, ((0.25, 0.80), (1.0, 0.90))), Curve(0.95, ((0.25, 0.93), (1.0, 0.95)))]
    assert remaining_gain(quarter, 97 / 391) is None
    assert remaining_gain(quarter, 97 / 391, 1 / 391) == pytest.approx(0.10)


def test_the_accuracy_bound_is_a_distribution_free_prediction_bound():
    # a new architecture's move exceeds the k-th smallest of n with probability (n + 1 - k) / (n + 1) <= 25 %
    assert prediction_bound(np.array([0.01, -0.02, 0.005, 0.0, 0.03, 0.002]), 0.75) == (6, 0.03)  # few: the largest
    assert prediction_bound(np.arange(1.0, 16.0), 0.75) == (12, 12.0)
    assert prediction_bound(np.array([0.5, 0.1, 0.2]), 0.75) == (3, 0.5)


def _planner(acts: dict[str, float]) -> Planner:
    return Planner(lambda p: {names.ACTIVATION_ELEMENTS: acts[p["arch"]], "macs": 1e6 / acts[p["arch"]],
                              "trainable_params": 1e5, "model_size_bytes": 4e5}, Objective("pareto", 1000), "auto")


def _row(arch: str, batch: int, acc: float, per_sample: float, state: str = "COMPLETE") -> dict:
    steps = 1024 // batch
    return {"arch": arch, "batch_size": batch, "lr": 0.1, "state": state, "accuracy": acc, "steps": steps,
            "training_J": per_sample * steps * batch, "inference_J_per_sample": per_sample / 3,
            "inference_samples": 1000}


def test_untrained_architectures_run_fewest_activations_first_then_by_a_log_log_energy_fit():
    acts = {f"a{i}": 1e5 * i for i in range(1, 9)}  # MACs fall as activations grow: MACs would order them backwards
    planner = _planner(acts)
    planner.refit([])
    untried = [{"arch": a, "batch_size": b, "lr": 0.1} for a in ("a3", "a1", "a2") for b in (64, 256)]
    order = [(p["arch"], p["batch_size"]) for p in sorted(untried, key=planner.rank_key)]
    assert order == [("a1", 256), ("a2", 256), ("a3", 256), ("a1", 64), ("a2", 64), ("a3", 64)]
    # energy per sample ∝ activations^1.5: a linear fit on joules would miss the dearest, the fit on logarithms not
    planner.refit([_row(f"a{i}", 256, 0.9, 1e-9 * acts[f"a{i}"] ** 1.5) for i in range(1, 8)])
    p = planner.predict({"arch": "a8", "batch_size": 256, "lr": 0.1})
    assert p is not None and "on logarithms" in p["predictor"]
    assert p["predicted_training_J"] == pytest.approx(1e-9 * acts["a8"] ** 1.5 * 1024, rel=0.2)


def test_a_points_best_case_comes_from_the_nearest_batch_size_that_other_architectures_moved_from():
    others = [f"o{i}" for i in range(MIN_ANALOGUES)]
    planner = _planner({a: 1e5 for a in ("x", "y", "z", *others)})
    # batch 256 → 64 in the other architectures: errors 0.20 → 0.19, 0.18, ...; the most, o_last, to 0.15
    errors = np.linspace(0.19, 0.15, MIN_ANALOGUES)
    rows = [_row("x", 256, 0.90, 1e-4), _row("x", 128, 0.91, 2e-4)]
    rows += [r for a in ("y", "z") for r in (_row(a, 256, 0.8, 1e-4), _row(a, 128, 0.8, 2e-4))]
    rows += [r for a, e in zip(others, errors) for r in (_row(a, 256, 0.8, 1e-4), _row(a, 64, 1 - e, 4e-4))]
    planner.refit(rows)
    best, basis = planner.best_case_accuracy({"arch": "x", "batch_size": 64, "lr": 0.1})
    # nobody moved 128 → 64, so batch 256 is the basis; with this few analogues the bound is the largest error
    # reduction (0.20 → 0.15), applied to x's errors at 256: 0.10 × 0.15 / 0.20
    assert best == pytest.approx(1 - 0.10 * 0.15 / 0.20) and "at batch 256" in basis
    assert f"ranked {MIN_ANALOGUES} of {MIN_ANALOGUES}" in basis
    # o0 at 128: three architectures moved 256 → 128 and none 64 → 128: too few analogues to reach the bound's
    # coverage, so no best case and no deferral
    assert planner.best_case_accuracy({"arch": "o0", "batch_size": 128, "lr": 0.1}) is None
    assert MIN_ANALOGUES / (MIN_ANALOGUES + 1) >= GAIN_QUANTILE > (MIN_ANALOGUES - 1) / MIN_ANALOGUES


def test_pruner_stops_a_dominated_trial_at_its_first_report_and_the_cost_adds_up(tmp_path):
    # grid order: (128, 0.5) forms the front (11 steps); (16, 0.5) is accurate though dearer: kept; (16, 1e-4)
    # learns nothing and its 88 steps/epoch cost about 8× the front's: pruned at its first report (half an epoch).
    space = build_space("mlp16", "128,16", lrs="0.5,0.0001", check_arch=check_arch)
    err = io.StringIO()
    report = Sweep(space, settings(tmp_path, prune=True, prune_every=0.5), partial(run_trial, epochs=1),
                   stream=err).run()
    study = optuna.load_study(study_name="aware", storage=f"sqlite:///{tmp_path}/study.db")
    by_point = {(t.params["batch_size"], t.params["lr"]): t for t in study.trials}
    front, kept, dominated = by_point[(128, 0.5)], by_point[(16, 0.5)], by_point[(16, 0.0001)]
    assert front.state == optuna.trial.TrialState.COMPLETE
    assert kept.state == optuna.trial.TrialState.COMPLETE, err.getvalue()
    assert kept.user_attrs["fidelity_reports"] and not any(r["prune"] for r in kept.user_attrs["fidelity_reports"])
    assert dominated.state == optuna.trial.TrialState.PRUNED, err.getvalue()
    reports = dominated.user_attrs["fidelity_reports"]
    assert len(reports) == 1 and reports[0]["prune"] and reports[0]["dominated_by"] in (front.number, kept.number)
    assert dominated.user_attrs["steps"] < kept.user_attrs["steps"]  # stopped at half its epoch
    assert len(kept.user_attrs["fidelity_reports"]) == 2  # validated every half epoch (--prune-every 0.5)
    # the validation at half the epoch is the search's: in what the trial spent, not in the model's lifecycle
    k = kept.user_attrs
    assert k["overhead_J"] > 0 and k["spent_J"] == pytest.approx(k["lifecycle_J"] + k["overhead_J"])
    assert k["lifecycle_J"] == pytest.approx(k["training_J"] + k["inference_J"])
    assert dominated.user_attrs["overhead_J"] > 0  # its one report was a mid-epoch validation
    # the margin is learned: the first trials have no curve to learn from, the pruned one had two
    assert [r["margin_rule"] for r in front.user_attrs["fidelity_reports"]][0].startswith("auto: fewer than")
    assert reports[0]["margin_rule"] == "auto" and reports[0]["margin"] >= 0
    # the projection's inference: what this trial's own validation pass drew per sample × the serving volume
    assert reports[0]["inference_basis"] == "measured by this validation" and reports[0]["inference_J_per_sample"] > 0
    assert reports[0]["inference_J"] == pytest.approx(reports[0]["inference_J_per_sample"] *
                                                      front.user_attrs["inference_samples"])
    table = report.table
    assert table.loc[table["trial"] == dominated.number, "note"].iloc[0].startswith("pruned at step")

    # the search's own energy: every trial's spent energy (fit + inference measured), pruned ones included
    spent = [t.user_attrs["spent_J"] for t in study.trials]
    assert all(s > 0 for s in spent)
    assert report.cost.total_J == pytest.approx(sum(spent))
    pruned = [t.user_attrs["spent_J"] for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert report.cost.pruned_J == pytest.approx(sum(pruned)) and report.cost.trials_pruned == len(pruned) >= 1
    parent = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(report.parent_run_id)
    assert parent.data.metrics["search/total_J"] == pytest.approx(sum(spent))
    assert parent.data.metrics["search/front_J"] == pytest.approx(report.cost.front_J)
    saved = json.loads((tmp_path / "out" / "search_cost.json").read_text())
    assert saved["cost"]["total_J"] == pytest.approx(sum(spent))
    assert "search cost:" in Sweep.summary(Sweep.__new__(Sweep), report)


@pytest.mark.skipif(not PostgresServer().available, reason="PostgreSQL is not installed (scripts/test.sh installs it)")
def test_two_pruning_workers_on_one_postgres_study_agree_on_the_front(tmp_path):
    def start(w: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.sweep_worker", db.url, server.uri, str(tmp_path / w),
                                 "prune"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})

    with PostgresServer() as db, MlflowServer(tmp_path / "mlflow") as server:
        procs = [start("a"), start("b")]  # at once, on an empty database: the schema is created under a lock
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
        study = optuna.load_study(study_name="shared-prune", storage=db.url)
        points = [(t.params["batch_size"], t.params["lr"]) for t in study.trials]
        assert len(points) == len(set(points)) == 4  # each point once, across both workers
        assert all(t.state.is_finished() for t in study.trials)
        spent = sum(t.user_attrs["spent_J"] for t in study.trials)
    a, b = (json.loads((tmp_path / w / "search_cost.json").read_text()) for w in ("a", "b"))
    ranks = [pd.read_csv(tmp_path / w / "ranking.csv") for w in ("a", "b")]
    fronts = [sorted(r.loc[r["pareto_rank"] == 1, "trial"]) for r in ranks]
    assert fronts[0] == fronts[1] and fronts[0]
    assert a["cost"] == b["cost"]  # the same total, front and pruned energy seen by both workers
    assert a["cost"]["total_J"] == pytest.approx(spent)


@pytest.mark.parametrize("argv, message", [
    (["--prune", "--prune-margin", "1.5"], "--prune-margin"),
    (["--prune", "--prune-every", "0"], "--prune-every"),
    (["--predict-defer-margin", "-1"], "--predict-defer-margin"),
])
def test_energy_aware_options_are_refused_before_any_training(tmp_path, capsys, argv, message):
    from green_mlops.cli import main

    rc = main(["sweep", "--archs", "lenet", "--batch-sizes", "32", *argv, "--storage", f"sqlite:///{tmp_path}/s.db",
               "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--output", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.db").exists()


def test_help_shows_the_defaults_of_the_energy_aware_options(capsys):
    from green_mlops.cli import main

    assert main(["sweep", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--prune-margin" in text and "(default auto)" in text and "(default: off)" in text
    assert "(default: 0.25 with --epochs 1, else once per epoch)" in text

