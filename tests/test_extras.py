"""Optional extras: pyproject.toml and green_mlops/extras.py agree; a missing one names its pip install line."""
from pathlib import Path

import pytest
import tomllib

from green_mlops.extras import EXTRAS, MissingExtra, check, require

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
    check("transformers", "transformers")
    with pytest.raises(MissingExtra, match=r"green-mlops\[transformers\]"):
        check("transformers", "green_mlops_no_such_module")


def test_base_modules_import_no_optional_package_at_import_time():
    """What `pip install green-mlops` gives must import without any extra: optional packages load inside
    functions, through require(), or in the extras' own packages (analysis/, genai/)."""
    import ast

    optional = {m.split(".")[0] for _, modules in EXTRAS.values() for m in modules}
    offenders = []
    for path in sorted((ROOT / "green_mlops").rglob("*.py")):
        rel = path.relative_to(ROOT / "green_mlops").parts
        if rel[0] in ("analysis", "genai"):
            continue
        for node in ast.parse(path.read_text()).body:  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{'/'.join(rel)}: {n}" for n in names if n.split(".")[0] in optional]
    assert offenders == []
