"""The package's shape, as docs/architecture.md describes it: layers import downward only, every contract
name lives in green_mlops/names.py, the meter is used through its public names, no module over 400 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "green_mlops"

#: Layer of each part (docs/architecture.md): a module may import its own layer and the ones below.
LAYERS = {
    "names": 0, "meter": 0, "redact": 0, "extras": 0, "outputs": 0,
    "argtypes": 1, "prometheus": 1, "metrics": 1, "mlflow": 1,
    "run": 2,
    "integrations": 3,
    "training": 4, "search": 4, "genai": 4, "analysis": 4,
    "commands": 5,
    "cli": 6, "__main__": 6, "__init__": 6, "lightning": 6, "transformers": 6, "data": 6, "zoo": 6,
}
#: Imports forbidden although the layers would allow them.
FORBIDDEN = [
    ("meter", "green_mlops."), ("names", "green_mlops."),  # the bottom imports nothing of green_mlops (but meter)
    ("search", "green_mlops.integrations.lightning"), ("search", "green_mlops.integrations.transformers"),
    ("analysis", "green_mlops.integrations"), ("genai", "green_mlops.integrations"), ("metrics", "green_mlops.mlflow"),
]
#: Names of the contract, as literals: they belong in names.py only.
CONTRACT = re.compile(r"^(power|energy|co2e|time|samples)/|^green_mlops/|^green_mlops\.(hw|method|provenance|sweep|"
                      r"analysis|genai)\.|_summary\.json$|_trace\.parquet$|_energy\.png$|"
                      r"^energy_per_sample_(train|inference)_J$|"
                      r"^(rate|saturation)_rps$|energy_per_((ok_|completed_)?request|output_token)_J$|^energy_per_s_W$")


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        yield path, rel.parts[0].removesuffix(".py"), ast.parse(path.read_text(), str(path))


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_layers_import_downward_only():
    bad = []
    for path, part, tree in _modules():
        for name in _imports(tree):
            if not name.startswith("green_mlops."):
                continue
            target = name.split(".")[1]
            if target in LAYERS and LAYERS[target] > LAYERS[part]:
                bad.append(f"{path.relative_to(PKG)} imports {name} (layer {LAYERS[target]} > {LAYERS[part]})")
            for src, prefix in FORBIDDEN:
                if part == src and (name == prefix or name.startswith(prefix.rstrip(".") + ".")) and not (
                        src == "meter" and target == "meter"):
                    bad.append(f"{path.relative_to(PKG)} imports {name} (forbidden for {src}/)")
    assert not bad, "\n".join(bad)


def test_meter_is_used_through_its_public_names():
    bad = [f"{path.relative_to(PKG)}: {name}" for path, part, tree in _modules() if part != "meter"
           for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
           and (name := node.module).startswith("green_mlops.meter.")]
    assert not bad, "\n".join(bad)


def _strings(tree: ast.AST):
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr):
            yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def test_no_contract_name_is_written_outside_names_py():
    bad = [f"{path.relative_to(PKG)}:{line}: {text!r}" for path, _, tree in _modules()
           if path.name != "names.py" or path.parent != PKG
           for line, text in _strings(tree) if CONTRACT.search(text)]
    assert not bad, "spell these through green_mlops.names:\n" + "\n".join(bad)


def test_no_module_over_400_lines():
    big = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not big, big
