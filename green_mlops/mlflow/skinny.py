"""Import MLflow in the metric delivery process as ``mlflow-skinny`` would: without pandas, numpy, pyarrow.

The full ``mlflow`` package imports pandas, numpy and pyarrow as soon as ``MlflowClient`` loads
(``mlflow.tracking.client`` → ``mlflow.data``), about 90 MB of a fresh interpreter's 230 MB. The
delivery process only calls ``MlflowClient.log_batch``, which needs none of them, and MLflow's
own ``mlflow-skinny`` distribution (the same code, shipped without those dependencies) guards every
such import. So the delivery process refuses them, as an environment without them would.

Where a store plugin does need one (an unknown tracking-URI scheme is never run lean; this is the
safety net), the refusal is recorded: the delivery process then exits with
:data:`EXIT_NEEDS_FULL_IMPORTS`, and the writer starts it again with every import allowed.
"""
from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

OPTIONAL = ("pandas", "numpy", "pyarrow")  # what mlflow-skinny runs without and log_batch never uses
# MLflow's built-in stores: SQLAlchemy (with or without a +driver), REST, file. Plugins run with every import.
LEAN_SCHEMES = frozenset({"", "file", "sqlite", "postgresql", "mysql", "mssql", "http", "https"})
EXIT_NEEDS_FULL_IMPORTS = 75  # the delivery process's exit code when a refused import was needed


def lean_for(tracking_uri: str) -> bool:
    """True when ``tracking_uri`` is one of MLflow's built-in stores, which work without pandas and numpy."""
    uri = str(tracking_uri).strip()
    if uri.lower().startswith("databricks"):  # "databricks" and "databricks-uc" name a profile, not a path
        return False
    return urlparse(uri).scheme.partition("+")[0].lower() in LEAN_SCHEMES


class SkinnyImports(importlib.abc.MetaPathFinder):
    """A meta-path finder that makes ``import pandas`` (etc.) fail as if the package were not installed."""

    def __init__(self, names: Iterable[str] = OPTIONAL) -> None:
        self.names = frozenset(names)
        self.refused: set[str] = set()

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            self.refused.add(fullname)
            raise ModuleNotFoundError(f"No module named {fullname!r} (green_mlops' MLflow delivery process runs "
                                      "without it, as mlflow-skinny does)", name=fullname)
        return None

    def caused(self, exc: BaseException) -> bool:
        """True when ``exc`` (or an exception it was raised from) is one of our refusals."""
        seen: set[int] = set()
        e: BaseException | None = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            if isinstance(e, ImportError) and e.name and e.name.partition(".")[0] in self.names:
                return True
            e = e.__cause__ or e.__context__
        return False


def install(names: Iterable[str] = OPTIONAL) -> SkinnyImports | None:
    """Refuse ``names`` in this process from now on; None (nothing done) when one is already imported."""
    names = tuple(names)
    if not names or any(n in sys.modules for n in names):
        return None
    finder = SkinnyImports(names)
    sys.meta_path.insert(0, finder)
    return finder
