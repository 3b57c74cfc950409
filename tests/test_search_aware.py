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

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from green_mlops.search import Sweep, SweepSettings, build_space
from green_mlops.search.margins import Curve, remaining_gain, tie
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

