"""benchmarks/search_efficiency.py in --replay mode on a small committed grid (tests/data/search_grid.csv),
and the predictor's deferrals where a user looks for them: the study, the ranking, search_cost.json, the report.

The grid is synthetic (energy ∝ MACs × (1 + 128 / batch)); architecture ``bad`` is as dear as two ``mid``s and
less accurate, so once its batch-256 run is known its batch-64 point is predicted dominated and deferred.
Everything else is real: Optuna SQLite study, MLflow SQLite store, the Lasso refit, the report.
"""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

from benchmarks import search_efficiency as bench
from green_mlops.analysis import write_report
from green_mlops.search.predict import MIN_ANALOGUES

GRID = Path(__file__).parent / "data" / "search_grid.csv"


def test_hypervolume_of_a_known_front():
    ref = (0.5, 1000.0)  # log10 = 3
    assert bench.hypervolume([0.7], [10.0], ref) == pytest.approx(0.2 * 2)
    two = bench.hypervolume([0.7, 0.9], [10.0, 100.0], ref)
    assert two == pytest.approx(0.2 * 2 + 0.2 * 1)
    assert bench.hypervolume([0.7, 0.9, 0.6], [10.0, 100.0, 500.0], ref) == pytest.approx(two)  # dominated: nothing
    assert bench.hypervolume([0.4], [10.0], ref) == 0.0


def test_replay_defers_a_predicted_dominated_point_and_reports_it(tmp_path, capsys):
    # one more cheap architecture: four (MIN_ANALOGUES) cheaper ones have moved from batch 256 to 64 before ``bad`` 64
    base = pd.read_csv(GRID)
    wee = base[base["arch"] == "tiny"].assign(arch="wee", accuracy=lambda d: d["accuracy"] - 0.1,
                                              train_J=lambda d: d["train_J"] / 2, macs=500_000)
    assert MIN_ANALOGUES == 4
    grid_path = tmp_path / "grid.csv"
    pd.concat([base, wee]).to_csv(grid_path, index=False)
    out = tmp_path / "bench"
    assert bench.main(["--grid", str(grid_path), "--replay", "--seeds", "0", "--no-prune", "--prune-margin", "0",
                       "--defer-margin", "0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "replay" in printed and "hypervolume ratio" in printed and (out / "search_efficiency_fronts.png").is_file()
    result = json.loads((out / "seed-0-replay.json").read_text())
    assert result["mode"] == "replay" and 0 < result["energy_share"] < 1 and result["hypervolume_ratio"] <= 1.0
    grid = bench.load_grid(grid_path)
    assert result["grid_energy_J"] == pytest.approx((grid["train_J"] + grid["inference_J"]).sum())

    seed_dir = out / "seed-0-replay"
    study = optuna.load_study(study_name="search-efficiency-replay-0", storage=f"sqlite:///{seed_dir}/study.db")
    deferred = {k: v for k, v in study.user_attrs.items() if k.startswith("green_mlops_deferral:")}
    assert [(d["params"]["arch"], d["params"]["batch_size"]) for d in deferred.values()] == [("bad", 64)]
    rec = next(iter(deferred.values()))
    assert rec["predicted_lifecycle_J"] > 0 and rec["dominated_by"] is not None and "bad at batch 256" in rec["predictor"]
    assert "error reduction" in rec["accuracy_basis"] and rec["margin_rule"].startswith("fixed")
    ranking = pd.read_csv(seed_dir / "ranking.csv")
    row = ranking[ranking["state"] == "DEFERRED"]
    assert list(row["arch"]) == ["bad"] and row["spent_J"].iloc[0] == 0 and "predicted" in row["note"].iloc[0]
    # the search's own energy is the sum of its trials' (the deferred point spent nothing)
    assert result["search_energy_J"] == pytest.approx(ranking["spent_J"].sum())
    assert json.loads((seed_dir / "search_cost.json").read_text())["deferrals"][0]["trial"] == rec["trial"]

    report = write_report("search-efficiency-replay", tmp_path / "report", "md",
                          f"sqlite:///{seed_dir}/mlflow.db", log=False, traces=False)
    text = report.path.read_text()
    assert "What the search cost" in text and "Points deferred by the energy predictor" in text
    assert list(pd.read_csv(tmp_path / "report" / "deferrals.csv")["arch"]) == ["bad"]
    assert pd.read_csv(tmp_path / "report" / "searches.csv")["search energy J (all trials)"].iloc[0] == \
        pytest.approx(result["search_energy_J"])

    # seeds split over calls: a later call merges their JSON files without searching again
    assert bench.main(["--merge", str(out / "seed-0-replay.json"), "--out", str(tmp_path / "merged")]) == 0
    assert "replay" in capsys.readouterr().out


def test_bad_input_is_refused_before_any_search(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--grid", str(tmp_path / "missing.csv"), "--replay", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        bench.main(["--grid", str(GRID), "--replay", "--seeds", "a,b", "--out", str(tmp_path)])


def test_a_call_stopped_at_its_budget_resumes_with_the_same_out(tmp_path, capsys):
    # the small grid records no times: every trial is expected to take 20 s (the rule's floor) of virtual time
    out = str(tmp_path / "bench")
    assert bench.main(["--grid", str(GRID), "--replay", "--seeds", "0", "--budget-s", "130", "--out", out]) == 3
    assert not (tmp_path / "bench" / "seed-0-replay.json").exists()
    assert bench.main(["--grid", str(GRID), "--replay", "--seeds", "0", "--out", out]) == 0
    result = json.loads((tmp_path / "bench" / "seed-0-replay.json").read_text())
    assert result["requeued_this_call"] == 1 and result["budget_stops"] == 1
    ranking = pd.read_csv(tmp_path / "bench" / "seed-0-replay" / "ranking.csv")
    points = list(zip(ranking.loc[ranking["state"] != "FAIL", "arch"], ranking.loc[ranking["state"] != "FAIL",
                                                                                   "batch_size"]))
    assert len(points) == len(set(points)) == 12  # every grid point once, the stopped one run on the resume


def test_replay_charges_each_report_a_validation_pass_kept_out_of_the_models_lifecycle(tmp_path):
    grid = pd.read_csv(GRID).assign(val_samples=10_000)
    path = tmp_path / "grid.csv"
    grid.to_csv(path, index=False)
    out = tmp_path / "bench"
    assert bench.main(["--grid", str(path), "--replay", "--seeds", "0", "--prune-every", "0.25", "--out", str(out)]) == 0
    result = json.loads((out / "seed-0-replay.json").read_text())
    study = optuna.load_study(study_name="search-efficiency-replay-0", storage=f"sqlite:///{out}/seed-0-replay/study.db")
    rows = {(r["arch"], r["batch_size"]): r for r in grid.to_dict("records")}
    trained = [t for t in study.trials if "spent_J" in t.user_attrs and "deferred" not in t.user_attrs]
    assert trained
    for t in trained:
        r, a = rows[(t.params["arch"], t.params["batch_size"])], t.user_attrs
        pass_J = r["inference_J_per_sample"] * 10_000  # one validation pass
        if t.state == optuna.trial.TrialState.COMPLETE:  # three extra passes (at 1/4, 2/4, 3/4 of the epoch)
            assert a["overhead_J"] == pytest.approx(3 * pass_J)
            assert a["lifecycle_J"] == pytest.approx(r["train_J"] + r["inference_J_per_sample"] * r["inference_samples"])
            assert a["spent_J"] == pytest.approx(a["lifecycle_J"] + 3 * pass_J)
        else:  # pruned at its k-th report: k passes, all of them the search's
            k = len(a["fidelity_reports"])
            assert a["overhead_J"] == pytest.approx(k * pass_J) and a["spent_J"] > k * pass_J
        assert all(rep["margin_rule"].startswith("auto") for rep in a["fidelity_reports"])
        # each report projects inference from its own validation pass: per sample × the serving volume
        assert all(rep["inference_basis"] == "measured by this validation" and rep["inference_J"] ==
                   pytest.approx(r["inference_J_per_sample"] * r["inference_samples"]) for rep in a["fidelity_reports"])
    assert result["search_energy_J"] == pytest.approx(sum(t.user_attrs.get("spent_J", 0.0) for t in study.trials))


def test_a_replay_seed_takes_its_round_and_the_first_rounds_results_where_that_round_lacks_them(tmp_path):
    grid = pd.read_csv(GRID)
    again = grid.head(2).assign(round=1, accuracy=lambda d: d["accuracy"] - 0.1)
    path = tmp_path / "grid.csv"
    pd.concat([grid, again]).to_csv(path, index=False)
    first, second = bench.load_grid(path, 0), bench.load_grid(path, 1)
    assert len(first) == len(second) == len(grid)
    key = ["arch", "batch_size"]
    diff = first.set_index(key)["accuracy"] - second.set_index(key)["accuracy"]
    assert sorted(diff[diff > 0].index) == sorted(zip(again["arch"], again["batch_size"]))
    assert diff[diff > 0].to_numpy() == pytest.approx([0.1, 0.1])
