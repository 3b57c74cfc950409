"""Where the study lives: SQLite (one machine), a journal file (shared filesystem), or PostgreSQL (many).

Every worker that opens the same storage URL and study name joins the same study. RDB storages
(SQLite, PostgreSQL) record a heartbeat per running trial, so a worker killed mid-trial has its trial
failed by the next worker that looks, and the study still completes.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from green_mlops.argtypes import check_whole
from green_mlops.redact import redact_text, redact_uri

DEFAULT_STORAGE = "sqlite:///green_mlops_sweep.db"
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


class StorageError(RuntimeError):
    """The study storage cannot be opened; the message says what to check."""


def is_journal(url: str) -> bool:
    """A journal storage is ``journal:PATH`` or a plain file path ending in .log/.journal/.jsonl."""
    return url.startswith("journal:") or ("://" not in url and url.endswith(JOURNAL_SUFFIXES))


def open_storage(url: str = DEFAULT_STORAGE, heartbeat_s: int = 60, grace_s: int | None = None,
                 on_stale_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
                 ) -> optuna.storages.BaseStorage:
    """Open (creating tables or the file if needed) and check the storage, before any training.

    ``heartbeat_s`` is how often a running trial proves it is alive; a trial silent for ``grace_s``
    (default 2 × heartbeat) is failed by the other workers, which then call ``on_stale_trial``.
    """
    check_whole("heartbeat interval (seconds)", heartbeat_s, 1, error=StorageError)
    if is_journal(url):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        if not path.parent.exists():
            raise StorageError(f"journal storage folder {str(path.parent)!r} does not exist; create it or "
                               "give another path (the file itself is created)")
        if not path.parent.is_dir():
            raise StorageError(f"journal storage {str(path)!r}: {str(path.parent)!r} is a file, not a folder; "
                               "give another path")
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise StorageError(f"cannot open journal storage {str(path)!r}: {exc.strerror or exc}; "
                               "give a writable path") from None
    if "://" not in url:
        raise StorageError(f"storage {redact_uri(url)!r} is neither a database URL (sqlite:///study.db, "
                           "postgresql://user:pw@host/db) nor a journal file (journal:/shared/study.log)")
    if url.startswith("sqlite:///"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        if not folder.exists():
            raise StorageError(f"SQLite storage folder {str(folder)!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat_s,
                                              grace_period=grace_s or 2 * heartbeat_s,
                                              engine_kwargs=_engine_kwargs(url),
                                              heartbeat_stale_trial_callback=on_stale_trial)
    except ImportError as exc:
        raise StorageError(f"storage {redact_uri(url)}: the database driver is missing ({exc}); for PostgreSQL "
                           "run `pip install 'psycopg[binary]'`") from None
    except Exception as exc:  # SQLAlchemy raises many kinds; all mean the same to the user
        first = redact_text(str(exc).splitlines()[0] if str(exc) else "", url)
        raise StorageError(f"cannot open study storage {redact_uri(url)}: {type(exc).__name__}: {first}\n"
                           "Check that the database server is running and reachable, and the URL "
                           "(user, password, host, port, database name).") from None


def supports_heartbeat(storage: optuna.storages.BaseStorage) -> bool:
    """True when a killed worker's trial will be failed automatically (RDB storages)."""
    return isinstance(storage, optuna.storages.RDBStorage)


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {}
