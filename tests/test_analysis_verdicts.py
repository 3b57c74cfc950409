"""Net energy, bootstrap intervals and verdicts on tests/data/synthetic_runs.csv, whose answers are known by
construction (tests/synthetic_runs.py), and the verdict rules on both sides of each threshold."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from green_mlops.analysis import analyse, load_csv
from green_mlops.analysis.basis import GROSS_LABEL, NET_LABEL, choose_basis
from green_mlops.analysis.batch_size import optimum_verdict
from green_mlops.analysis.correlation import one_batch_size
from green_mlops.analysis.findings import check_findings, combine
from green_mlops.analysis.paper_metrics import paper_metrics
from green_mlops.analysis.schema import EXPORT, EXPORT_COLUMNS, from_export, to_export
from green_mlops.analysis.uncertainty import Interval, argmin_interval, correlation_interval, median_interval
from green_mlops.analysis.verdict import AGREES, BY_CONSTRUCTION, CANNOT_TELL, DIFFERS, TOO_FEW, judge
from tests.synthetic_runs import CPU_W, DRAM_W, IDLE, PATH, SAMPLES, make_runs, model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def runs():
    return load_csv(PATH)


def _findings(df: pd.DataFrame) -> dict[str, object]:
    return {f.claim: f for f in check_findings(df, paper_metrics(df, "inference", choose_basis(df)))}


def _reload(tmp_path, df: pd.DataFrame) -> pd.DataFrame:
    df.to_csv(tmp_path / "runs.csv", index=False)
    return load_csv(tmp_path / "runs.csv")


def test_committed_csv_is_the_generator_output():
    pd.testing.assert_frame_equal(pd.read_csv(PATH), make_runs(), check_dtype=False, rtol=1e-12)
    assert set(pd.read_csv(PATH).columns) <= set(EXPORT_COLUMNS)


def test_net_energy_recomputed_from_idle_power_and_time(runs):
    """net = (device power − idle power) × the phase's own time, per device and in total."""
    assert choose_basis(runs).net and choose_basis(runs).label == NET_LABEL
    r = runs.iloc[0]
    gpu = model(0)["gpu_W"]
    for phase, gpu_W in (("train", gpu), ("inference", gpu - 50)):
        t = r[f"{phase}_time_s"]
        assert r[f"{phase}_net_gpu_J"] == pytest.approx((gpu_W - IDLE["gpu"]) * t)
        assert r[f"{phase}_net_cpu_J"] == pytest.approx((CPU_W - IDLE["cpu"]) * t)
        assert r[f"{phase}_net_dram_J"] == pytest.approx((DRAM_W - IDLE["dram"]) * t)
        assert r[f"{phase}_net_J"] == pytest.approx(r[f"{phase}_energy_J"] - 150.0 * t)
        assert r[f"{phase}_power_gpu_W"] == pytest.approx(gpu_W)  # device energy and time over one window
        assert r[f"{phase}_device_window"] == "stage"
    assert r["train_net_per_sample_J"] == pytest.approx(r["train_net_J"] / SAMPLES)
    assert r["idle_total_W"] == 150.0 and r["hardware"] == "1× NVIDIA H200 (host not recorded)"
    assert r["provenance"].startswith("gpu: measured (nvml-energy-counter); cpu: estimated")


def test_findings_and_intervals_on_the_known_answer(runs):
    f = _findings(runs)
    ratio = f["training ≈ 3× inference time per sample"]
    assert ratio.verdict == AGREES and "median 3.00 [3.00, 3.00]× over 6 configuration(s) at batch size 128" in ratio.here
    macs = f["macs_param correlates with energy"]
    assert macs.verdict == AGREES and "inference_net_J" in macs.here and "ρ = 1.00 [1.00, 1.00] (n = 6" in macs.here
    best = f["an energy-minimising batch size exists"]
    assert best.verdict == AGREES and best.here.count("best 256 [256, 256]") == 6
    linear = f["energy is linear in time"]  # CPU and DRAM at constant estimated power: the total is circular
    assert "net energy: train" in linear.here and "→ by construction" in linear.here
    assert "GPU only (measured)" in linear.here and linear.verdict == AGREES and "circular" in linear.why


def test_optimum_interval_comes_from_the_repeats(runs):
    a = analyse(runs, with_figures=False)
    opt = a.batch_sizes.set_index("model")
    assert (opt["best_batch_size"] == 256).all() and (opt["repeats"] == 3).all()
    assert (opt["levels_off_at"] == 256).all() and (opt["verdict"] == AGREES).all()
    assert a.predictor.target == "train_net_per_sample_J"  # the Lasso learns net energy by default
    assert a.correlations["inference"].target == "inference_net_J"
    row = a.correlations["inference"].table.set_index("metric").loc["macs_param"]
    assert row["n"] == 6 and row["spearman_low"] == pytest.approx(1.0)


def test_gross_only_data_says_so_and_never_mixes(tmp_path):
    gross = make_runs().drop(columns=[c for c in EXPORT_COLUMNS if "_net_" in c or c.endswith("net_J")
                                      or c.startswith("idle_")])
    runs = _reload(tmp_path, gross)
    basis = choose_basis(runs)
    assert not basis.net and basis.label == GROSS_LABEL == "gross (no idle baseline in this data)"
    assert runs["train_net_J"].isna().all()
    # an older export's train_net_J is the per-step energy/net_J (the steps only): never read as the fit's net
    old = make_runs().drop(columns=["inference_net_J", "train_gpu_net_J", "idle_total_W"])
    old_runs = _reload(tmp_path, old[["arch", "batch_size", "train_time_s", "train_energy_J", "train_net_J",
                                      "train_gpu_J", "method_gpu", "gpu"]])
    assert old_runs["train_net_J"].isna().all() and old_runs["train_steps_net_J"].notna().all()
    assert (old_runs["train_device_window"] == "training steps").all()
    assert "covers the training steps only" in choose_basis(old_runs).why


def test_too_few_runs_never_agrees(tmp_path):
    one_repeat = _reload(tmp_path, make_runs(repeats=1))
    assert _findings(one_repeat)["an energy-minimising batch size exists"].verdict == TOO_FEW
    four_models = _reload(tmp_path, make_runs(models=4, repeats=1))
    f = _findings(four_models)
    assert f["macs_param correlates with energy"].verdict == TOO_FEW  # 4 configurations < 5
    assert f["training ≈ 3× inference time per sample"].verdict == TOO_FEW
    assert "ρ = 1.00 (no interval)" in f["macs_param correlates with energy"].here


@pytest.mark.parametrize("shape, noise, verdict", [
    ({32: 1.0, 64: 1.3, 128: 1.6}, 0.01, DIFFERS),        # rises from the smallest size
    ({32: 2.0, 64: 1.5, 128: 1.0}, 0.01, CANNOT_TELL),    # still falling at the largest size
    ({32: 2.0, 64: 1.0, 128: 1.0}, 0.05, CANNOT_TELL),    # 64 and 128 tie within the noise: the interval reaches 128
    ({32: 2.0, 64: 1.0, 128: 1.5}, 0.01, AGREES),
])
def test_optimum_verdicts_on_data(tmp_path, shape, noise, verdict):
    runs = _reload(tmp_path, make_runs(models=1, shape=shape, noise=noise, repeats=5))
    assert _findings(runs)["an energy-minimising batch size exists"].verdict == verdict


@pytest.mark.parametrize("low, high, expected", [
    (0.71, 0.95, AGREES), (0.70, 1.0, AGREES), (0.69, 0.95, CANNOT_TELL), (0.2, 0.69, DIFFERS),
    (math.nan, math.nan, TOO_FEW),
])
def test_judge_on_both_sides_of_the_threshold(low, high, expected):
    assert judge(Interval(0.8, low, high, 10), 0.7, 1.0) == expected


@pytest.mark.parametrize("low, high, expected", [
    (3.9, 4.1, CANNOT_TELL), (1.9, 2.5, CANNOT_TELL), (2.0, 4.0, AGREES), (4.01, 5, DIFFERS), (1.0, 1.99, DIFFERS),
])
def test_judge_a_two_sided_region(low, high, expected):
    assert judge(Interval(3.0, low, high, 10), 2.0, 4.0) == expected


@pytest.mark.parametrize("low, high, expected", [
    (64, 128, AGREES), (32, 128, CANNOT_TELL), (64, 512, CANNOT_TELL), (32, 32, DIFFERS), (512, 512, CANNOT_TELL),
    (math.nan, math.nan, TOO_FEW),
])
def test_optimum_verdict_rules(low, high, expected):
    assert optimum_verdict(low, high, 32, 512) == expected


def test_combined_verdict_and_by_construction_rules():
    assert combine([AGREES, DIFFERS]) == DIFFERS and combine([AGREES, CANNOT_TELL]) == CANNOT_TELL
    assert combine([AGREES, TOO_FEW]) == AGREES and combine([TOO_FEW, TOO_FEW]) == TOO_FEW
    assert combine([BY_CONSTRUCTION]) == BY_CONSTRUCTION and combine([]) == TOO_FEW


def test_intervals_need_enough_configurations():
    assert not median_interval([1.0, 2.0, 3.0, 4.0]).known  # 4 < 5
    iv = median_interval([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert iv.known and iv.low <= 4.0 <= iv.high and iv.point == 4.0
    assert not correlation_interval([1, 2, 3, 4], [1, 2, 3, 4]).known
    noisy = correlation_interval(range(40), [(-1) ** i * 5 + i for i in range(40)], "pearson")
    assert noisy.low < noisy.point < noisy.high <= 1.0
    iv, boot = argmin_interval(pd.Series([3.0, 1.0, 2.0, 3.1, 1.1, 2.1]), pd.Series([32, 64, 128] * 2))
    assert iv.point == 64 and not iv.known and boot.size == 0  # two repeats: fewer than three


def test_mlflow_names_map_both_ways():
    assert EXPORT["metrics.energy/fit_net_J"] == "train_net_J" and EXPORT["metrics.power/idle_total_W"] == "idle_total_W"
    assert EXPORT["metrics.energy/predict_gpu_net_J"] == "inference_gpu_net_J"
    back = from_export(make_runs(models=1, repeats=1).head(1))
    assert {"metrics.energy/fit_J", "metrics.energy/predict_net_J", "tags.green_mlops.provenance.cpu"} <= set(back)
    assert back["tags.green_mlops.provenance.cpu"].iloc[0] == "estimated"
    flat = make_runs(models=2, repeats=1)
    pd.testing.assert_frame_equal(to_export(from_export(flat)), flat, check_dtype=False)  # writer ∘ reader = id


def test_runs_logged_to_mlflow_with_the_new_metrics_load_as_net(tmp_path):
    """The end-of-run metrics the callback logs (energy/fit_net_J, per-device, power/idle_*) map to the run
    table through the same schema; a run without them makes the whole table gross."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from green_mlops.analysis import load_runs

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("net", artifact_location=str(tmp_path / "art"))
    flat = make_runs(models=1, repeats=1).head(2)
    back = from_export(flat)
    for _, row in back.iterrows():
        run = client.create_run(exp, tags={k.removeprefix("tags."): str(v) for k, v in row.items()
                                           if k.startswith("tags.")}).info.run_id
        client.log_batch(run, metrics=[Metric(k.removeprefix("metrics."), float(v), 0, 0) for k, v in row.items()
                                       if k.startswith("metrics.")],
                         params=[Param(k.removeprefix("params."), str(v)) for k, v in row.items()
                                 if k.startswith("params.")])
        client.set_terminated(run, "FINISHED")
    runs = load_runs("net", uri, details=False)
    assert choose_basis(runs).net and runs["idle_gpu_W"].eq(100.0).all()
    expected = flat.set_index("batch_size")["train_gpu_net_J"]
    assert runs.set_index("batch_size")["train_net_gpu_J"].to_dict() == pytest.approx(expected.to_dict())


def test_callback_with_an_idle_baseline_gives_net_energy_end_to_end(tmp_path, monkeypatch):
    """A real fit and test metered by EnergyCallback(idle_seconds=...): the loader takes net energy, per device
    and in total, over each stage's window (from the metrics, else the stage summaries), and chooses net."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import MLFlowLogger

    from green_mlops.analysis import load_runs
    from green_mlops.lightning import EnergyCallback
    from tests.lightning_digits import DigitsMLP, digits_loaders

    monkeypatch.setenv("GREEN_MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    logger = MLFlowLogger(experiment_name="idle", tracking_uri=uri, artifact_location=str(tmp_path / "art"))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False,
                         callbacks=[EnergyCallback(interval=0.05, idle_seconds=0.3)], enable_checkpointing=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    train, val = digits_loaders(128)
    trainer.fit(DigitsMLP(), train, val)
    trainer.test(trainer.lightning_module, val, verbose=False)
    runs = load_runs("idle", uri)
    r = runs.iloc[0]
    assert choose_basis(runs).net, choose_basis(runs).why
    for phase in ("train", "inference"):
        devices = [d for d in ("gpu", "cpu", "dram") if pd.notna(r[f"{phase}_net_{d}_J"])]
        assert devices and r[f"{phase}_net_J"] == pytest.approx(sum(r[f"{phase}_net_{d}_J"] for d in devices))
        assert r[f"{phase}_net_J"] < r[f"{phase}_energy_J"] and r[f"{phase}_device_window"] == "stage"
    assert r["idle_total_W"] > 0


def test_zoo_benchmark_csv_loads_with_its_own_column_names_and_rounds_as_repeats(tmp_path):
    """Issue #17: benchmarks/zoo.py writes train_J, inference_J, *_J_per_sample, gpu_name, cpu_model, round and
    "measured:nvml-energy-counter"; the H200 grid (round 0) merged with round 1's first call loads as runs with
    energies, the host, the provenance, and two repeats where a configuration ran in both rounds."""
    import subprocess
    import sys

    zoo = ROOT / "results" / "h200" / "zoo"
    merged = tmp_path / "runs-r01.csv"
    subprocess.run([sys.executable, "benchmarks/zoo.py", "--merge", *map(str, sorted(zoo.glob("zoo-grid-r[01]-c*.csv"))),
                    "--out", str(merged)], cwd=ROOT, check=True, capture_output=True, env={"PYTHONPATH": str(ROOT)})
    raw = pd.read_csv(merged)
    runs = load_csv(merged)
    assert len(runs) == len(raw) == 70
    key = ["model", "batch_size", "repeat"]
    got = runs.set_index(key).sort_index()
    want = raw.rename(columns={"arch": "model", "round": "repeat"}).set_index(key).sort_index()
    assert got["train_energy_J"].to_numpy() == pytest.approx(want["train_J"].to_numpy())
    assert got["inference_energy_J"].to_numpy() == pytest.approx(want["inference_J"].to_numpy())
    assert got["train_net_J"].to_numpy() == pytest.approx(want["train_net_J"].to_numpy())
    assert runs["hardware"].nunique() == 1 and "H200" in runs["hardware"].iloc[0]
    assert "host not recorded" not in runs["hardware"].iloc[0]
    assert runs["provenance"].str.contains("gpu: measured (nvml-energy-counter)", regex=False).all()
    assert choose_basis(runs).net
    twice = runs.groupby(["model", "batch_size"]).size()
    assert (twice == 2).sum() == 22 and (twice == 1).sum() == 26
    keep, _ = one_batch_size(runs)  # round 1 ran more batch-256 points; Table 3 stays at the paper's 128
    assert set(runs.loc[keep, "batch_size"]) == {128}
