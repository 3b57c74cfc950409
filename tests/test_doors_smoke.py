"""CPU smoke run of the short-step doors benchmark (its figures mean nothing here; the GPU run is in BENCHMARKS.md)."""
import json

import pytest

from benchmarks import doors


def test_every_door_runs_bare_and_metered_and_prints_the_table(tmp_path, capsys):
    assert doors.main(["--accelerator", "cpu", "--steps", "6", "--warmup", "2", "--rounds", "1",
                       "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "doors.json").read_text())
    assert {(r["door"], r["metered"]) for r in report["rows"]} == {(d, m) for d in doors.DOORS for m in (False, True)}
    assert all(r["steps"] == 8 and r["steps_per_s"] > 0 for r in report["rows"])
    assert capsys.readouterr().out.splitlines()[-1].startswith("hf")
    # --merge pools calls (no training): the same call twice is two rounds, each door paired within each
    assert doors.main(["--merge", str(tmp_path / "doors.json"), str(tmp_path / "doors.json"),
                       "--out", str(tmp_path / "pooled")]) == 0
    pooled = json.loads((tmp_path / "pooled" / "doors.json").read_text())
    for door in doors.DOORS:
        assert pooled["summary"][door]["ratio_per_round"] == 2 * report["summary"][door]["ratio_per_round"]
    assert capsys.readouterr().out.startswith("2 rounds;")


def test_bad_doors_are_refused_before_training():
    with pytest.raises(SystemExit):
        doors.main(["--accelerator", "cpu", "--doors", "pl,keras"])
