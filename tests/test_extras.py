"""Optional extras: pyproject.toml and green_mlops/extras.py agree; a missing one names its pip install line."""
from pathlib import Path

import pytest
import tomllib

from green_mlops.extras import EXTRAS, MissingExtra, require

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_extra_is_declared_and_the_base_install_is_lean():
    declared = PROJECT["optional-dependencies"]
    assert set(EXTRAS) <= set(declared)
    base = " ".join(PROJECT["dependencies"])
    for optional in ("thop", "aiohttp", "psycopg", "scikit-learn", "scipy", "prometheus", "transformers", "joblib"):
        assert optional not in base, f"{optional} is a hard dependency again"
    test = " ".join(declared["test"]) + " ".join(declared["all"])
    for extra in set(EXTRAS) - {"amd"}:  # the tests install every extra but AMD's (its amdsmi matches ROCm)
        assert extra in test, f"the test extra does not pull green-mlops[{extra}]"


def test_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(EXTRAS, "prometheus", ("a Prometheus endpoint", ("green_mlops_no_such_module",)))
    with pytest.raises(MissingExtra, match=r"pip install 'green-mlops\[prometheus\]'"):
        require("prometheus")
    assert require("genai", "aiohttp").__name__ == "aiohttp"
    with pytest.raises(ValueError, match="unknown extra"):
        require("nope")
