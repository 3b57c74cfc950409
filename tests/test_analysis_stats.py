"""Correlations, the Lasso energy predictor and the paper's findings on synthetic tables with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from green_mlops.analysis import AnalysisError, EnergyPredictor, TooFewRuns, correlations
from green_mlops.analysis.correlation import one_batch_size
from green_mlops.analysis.findings import batch_size_optimum, check_findings
from green_mlops.analysis.paper_metrics import paper_metrics


@pytest.fixture()
def table():
    """Two hardware configurations, 12 runs each; energy ∝ macs × samples, plus noise on one of them."""
    rng = np.random.default_rng(7)
    rows = []
    for hw, watts in (("A100 box", 300.0), ("H100 box", 450.0)):
        for i in range(12):
            macs = 1e6 * (i + 1)
            rows.append({"hardware": hw, "macs": macs, "noise": rng.normal(), "constant": 1.0,
                         "energy_J": watts * macs / 1e6 + (rng.normal(0, 5) if hw == "H100 box" else 0.0)})
    return pd.DataFrame(rows)


def test_correlations_per_hardware_match_scipy(table):
    c = correlations(table, "energy_J", ["macs", "noise", "constant"])
    row = c.table.set_index(["hardware", "metric"]).loc[("A100 box", "macs")]
    assert row["n"] == 12 and row["spearman_rho"] == pytest.approx(1.0) and row["pearson_r"] == pytest.approx(1.0)
    h = table[table["hardware"] == "H100 box"]
    assert c.table.set_index(["hardware", "metric"]).loc[("H100 box", "noise"), "spearman_rho"] == pytest.approx(
        stats.spearmanr(h["noise"], h["energy_J"]).statistic)
    assert abs(c.table.set_index(["hardware", "metric"]).loc[("A100 box", "noise"), "pearson_r"]) < 0.8
    wide = c.wide()
    assert list(wide.columns) == ["A100 box", "H100 box"] and list(wide.index) == ["macs", "noise"]
    assert not wide.isna().any().any()
    assert any("constant is the same in all 12 runs" in n for n in c.notes)  # left out, said so


def test_too_few_runs_is_said_not_printed_as_nan(table):
    small = pd.concat([table[table["hardware"] == "A100 box"], table[table["hardware"] == "H100 box"].head(2)])
    c = correlations(small, "energy_J", ["macs"])
    assert set(c.table["hardware"]) == {"A100 box"}
    assert any("H100 box: 2 run(s) with energy_J; correlations need at least 3" in n for n in c.notes)
    with pytest.raises(TooFewRuns, match="need at least 3"):
        correlations(table.head(2), "energy_J", ["macs"])


def _configs(n=30, seed=3):
    """Energy per sample = 2e-9 × macs + 1e-4 × (256 / batch size): batch size matters, noise does not."""
    rng = np.random.default_rng(seed)
    macs = rng.uniform(1e6, 5e8, n)
    bs = rng.choice([32, 64, 128, 256], n)
    y = 2e-9 * macs + 1e-4 * 256 / bs + rng.normal(0, 1e-4, n)
    return pd.DataFrame({"macs": macs, "batch_size": bs, "lr": rng.uniform(1e-3, 1e-1, n),
                         "energy_per_sample_train_J": y, "hardware": "H100 box"})


def test_lasso_finds_the_features_that_matter_and_predicts_unseen_configs(tmp_path):
    df = _configs()
    p = EnergyPredictor.fit(df, features=["macs", "batch_size", "lr"])
    s = p.summary
    assert s.n_runs == 30 and s.folds == 5 and s.cv_r2 > 0.95
    assert s.importances.index[0] == "macs" and s.importances["macs"] > 0.8
    assert s.importances["lr"] < 0.02  # irrelevant: shrunk to (nearly) zero
    assert s.importances.sum() == pytest.approx(1.0)
    loaded = EnergyPredictor.load(p.save(tmp_path / "p.joblib"))
    config = {"macs": 3e8, "batch_size": 128, "lr": 0.01}
    truth = 2e-9 * 3e8 + 1e-4 * 2
    assert loaded.predict(config) == pytest.approx(truth, rel=0.1)
    assert loaded.predict(config) == p.predict(config)
    assert "Lasso predicting energy_per_sample_train_J" in loaded.describe()
    with pytest.raises(AnalysisError, match="lacks batch_size"):
        loaded.predict({"macs": 3e8, "lr": 0.01})


def test_lasso_refuses_too_few_runs_and_bad_files(tmp_path):
    with pytest.raises(TooFewRuns, match="at least 6 runs .* there are 4"):
        EnergyPredictor.fit(_configs(4))
    (tmp_path / "x.joblib").write_bytes(b"")
    import joblib

    joblib.dump({"something": "else"}, tmp_path / "x.joblib")
    with pytest.raises(AnalysisError, match="not a green_mlops energy predictor"):
        EnergyPredictor.load(tmp_path / "x.joblib")


def test_default_features_derive_macs_param_and_encode_hardware():
    df = pd.concat([_configs(12, 1), _configs(12, 2).assign(hardware="A100 box")], ignore_index=True)
    df["trainable_params"] = 1e6
    p = EnergyPredictor.fit(df)
    assert "macs_param" in p.features and p.categorical == ["hardware"]
    with pytest.warns(UserWarning, match="not among the runs"):
        p.predict({"macs": 1e8, "trainable_params": 1e6, "batch_size": 64, "lr": 0.01, "hardware": "TPU"})


def _sweep_runs(repeats=1):
    """Three models × four batch sizes on one machine; energy per sample bottoms out at batch 128."""
    rows = []
    for model, macs, params in (("small", 1e6, 1e5), ("mid", 5e7, 1e6), ("big", 5e8, 2e6)):
        for bs, factor in [(b, f) for b, f in ((32, 1.6), (64, 1.2), (128, 1.0), (256, 1.02)) for _ in range(repeats)]:
            per_sample_s = 1e-12 * macs * factor
            rows.append({"hardware": "H100 box", "model": model, "batch_size": bs, "macs": macs,
                         "trainable_params": params, "train_samples": 1e5, "inference_samples": 1e4,
                         "train_time_s": per_sample_s * 1e5, "inference_time_s": per_sample_s * 1e4 / 3,
                         "train_energy_J": 400 * per_sample_s * 1e5, "inference_energy_J": 300 * per_sample_s * 1e4 / 3,
                         "energy_per_sample_train_J": 400 * per_sample_s})
    return pd.DataFrame(rows)


def test_findings_on_a_known_sweep():
    """Three models, one run per configuration: the points are right, but three models at batch 128 cannot carry
    a verdict on a median or a correlation, and an optimum without repeats has no interval (too few runs)."""
    runs = _sweep_runs()
    opt = batch_size_optimum(runs).set_index("model")
    assert (opt["best_batch_size"] == 128).all() and opt["plateau"].all()
    assert (opt["trend"] == "minimum inside the range").all() and (opt["verdict"] == "too few runs").all()
    found = {f.claim: f for f in check_findings(runs, paper_metrics(runs, "inference"))}
    ratio = found["training ≈ 3× inference time per sample"]
    assert ratio.verdict == "too few runs" and "median 3.00 (no interval)×" in ratio.here
    assert found["an energy-minimising batch size exists"].verdict == "too few runs"
    linear = found["energy is linear in time"]  # 12 configurations, no provenance: judged, r = 1 exactly
    assert linear.agrees and "r = 1.000 [1.000, 1.000]" in linear.here
    macs = found["macs_param correlates with energy"]
    assert macs.verdict == "too few runs" and "ρ = 1.00 (no interval)" in macs.here
    repeated = {f.claim: f for f in check_findings(_sweep_runs(3), paper_metrics(_sweep_runs(3), "inference"))}
    assert repeated["an energy-minimising batch size exists"].agrees


def test_findings_say_when_the_runs_cannot_tell():
    runs = _sweep_runs().head(2)
    found = check_findings(runs, paper_metrics(runs, "inference"))
    undecided = [f for f in found if f.agrees is None]
    assert {f.claim for f in undecided} >= {"macs_param correlates with energy", "energy is linear in time"}
    assert all(f.why for f in undecided)
    falling = _sweep_runs(3)
    falling = falling[falling["batch_size"] <= 128]
    f = {x.claim: x for x in check_findings(falling, paper_metrics(falling, "inference"))}
    assert f["an energy-minimising batch size exists"].verdict == "cannot tell"
    assert "reaches the largest size tried" in f["an energy-minimising batch size exists"].why


def test_correlations_compare_models_at_one_batch_size():
    """Like Table 3: with several batch sizes, the one with the most models is kept, per hardware."""
    runs = pd.concat([_sweep_runs(), pd.DataFrame([{"hardware": "H100 box", "model": "extra", "batch_size": 64}])],
                     ignore_index=True)
    keep, notes = one_batch_size(runs)
    assert set(runs.loc[keep, "batch_size"]) == {64} and keep.sum() == 4
    assert notes == ["H100 box: correlations over the 4 runs at batch size 64 (4 models) of 13: like Table 3, models "
                     "are compared at one batch size (the batch-size section covers the others)"]
    tie, _ = one_batch_size(_sweep_runs())
    assert set(_sweep_runs().loc[tie, "batch_size"]) == {128}  # equal counts: the paper's batch size
    single, none = one_batch_size(_sweep_runs().query("batch_size == 32"))
    assert single.all() and none == []
