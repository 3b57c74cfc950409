"""benchmarks/fit_cost.py: a CPU smoke run with tiny fits (its figures mean nothing here), and its arithmetic."""
from __future__ import annotations

import json

import pytest

from benchmarks import fit_cost


def test_smoke_run_measures_both_arms_in_fresh_processes_and_prints_the_table_last(tmp_path, capsys):
    assert fit_cost.main(["--rounds", "1", "--steps", "3,6", "--fits", "2", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "fit_cost.json").read_text())
    rows = report["details"]
    assert sorted((r["arm"], r["steps"]) for r in rows) == [("bare", 3), ("bare", 6), ("energy", 3), ("energy", 6)]
    for r in rows:
        assert r["process_cpu_s"] > sum(f["cpu_s"] for f in r["fits"]) > 0  # the tree includes start-up
        assert len(r["fits"]) == 2 and all(f["fit_end_s"] >= 0 for f in r["fits"])
    energy = [f for r in rows if r["arm"] == "energy" for f in r["fits"]]
    assert all(f["teardown_cpu_s"] > 0 for f in energy)  # the callback's end of run, delivery process included
    assert set(report["summary"]) >= {"cold", "warm", "fit_end_s", "fit_end_added_s", "hooks_cpu_s"}
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("| callback's teardown hook")


def test_fixed_and_per_step_parts_come_from_differences_paired_within_each_round():
    def row(rnd, arm, steps, first, later, own):
        fit = {"fit_end_s": 0.1, "setup_cpu_s": 0, "first_batch_cpu_s": 0, "teardown_cpu_s": 0}
        return {"round": rnd, "arm": arm, "steps": steps, "process_cpu_s": 10 + first + later,
                "fits": [{**fit, "cpu_s": first, "self_cpu_s": first}, {**fit, "cpu_s": later, "self_cpu_s": own}]}

    load = [0.0, 5.0, 9.0]  # every fit of a round slowed alike: the paired differences do not see it
    rows = [r for rd, extra in enumerate(load) for r in (
        row(rd, "bare", 100, 1 + extra, 1 + extra, 1 + extra), row(rd, "bare", 300, 3 + extra, 3 + extra, 3 + extra),
        row(rd, "energy", 100, 2.5 + extra, 1.7 + extra, 1.2 + extra),
        row(rd, "energy", 300, 4.9 + extra, 4.1 + extra, 3.4 + extra))]
    s = fit_cost.summarise(rows, fits=2)
    assert s["warm"]["added_cpu_s_at_steps"] == {100: pytest.approx(0.7), 300: pytest.approx(1.1)}
    assert s["warm"]["fixed_added_cpu_s"] == pytest.approx(0.5)  # 0.7 − 100 × 0.002
    assert s["warm"]["per_step_added_cpu_ms"] == pytest.approx(2.0)
    assert s["warm_training_process"]["fixed_added_cpu_s"] == pytest.approx(0.1)  # 0.2 − 100 × 0.001
    assert s["warm_training_process"]["per_step_added_cpu_ms"] == pytest.approx(1.0)
    assert s["cold"]["fixed_added_cpu_s"] == pytest.approx(1.3)  # 1.5 − 100 × 0.002: the process's own start
    assert s["fit_end_added_s"] == pytest.approx(0.0)
    assert fit_cost.table(s).splitlines()[2].startswith("| cold: ")


def test_bad_arguments_are_refused_before_any_fit():
    with pytest.raises(SystemExit):
        fit_cost.main(["--steps", "500"])
    with pytest.raises(SystemExit):
        fit_cost.main(["--steps", "5x,10"])
