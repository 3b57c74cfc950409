"""Shared test set-up: spooled metrics of a test stay in that test's temporary directory."""
import pytest


@pytest.fixture(autouse=True)
def _private_spool(tmp_path, monkeypatch):
    monkeypatch.setenv("GREEN_MLOPS_SPOOL_DIR", str(tmp_path / "spool"))
