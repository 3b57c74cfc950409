"""Artifacts to MLflow without waiting minutes on a dead server; what cannot go now waits for ``green-mlops sync``.

MLflow's REST client reads ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (default 7, exponential backoff) and
``MLFLOW_HTTP_REQUEST_TIMEOUT`` (default 120 s) from the environment on every request
(``mlflow.utils.rest_utils.http_request``), so one upload to a dead server costs about four minutes.
:func:`fast_failing` sets both (no retries, 10 s) for the calls inside it and puts back what the
user had as soon as they return; calls made meanwhile by other threads of the process see the same
settings, for those seconds only.

An upload that fails keeps the files, in the spool folder beside the metrics
(``<spool_dir>/<run_id>.artifacts/<artifact_path>/``, private like the spool, with the run's
tracking URI in ``.tracking_uri``); ``green-mlops sync`` (:func:`sync_artifacts`) uploads them and
removes them. The temporary folder the files were written in is removed either way.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from green_mlops.mlflow.spool import FILE_MODE, check_run_id, default_spool_dir, make_private_dir
from green_mlops.redact import redact_text, redact_uri

log = logging.getLogger(__name__)

SUFFIX = ".artifacts"
URI_FILE = ".tracking_uri"
FAST_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
TEMP_PREFIX = "green_mlops_"  # green_mlops.artifacts.write_run_artifacts writes into such a temporary folder
_env_lock = threading.Lock()


@contextlib.contextmanager
def fast_failing() -> Iterator[None]:
    """MLflow HTTP calls inside fail in seconds (no retries, 10 s timeout); the user's settings come back after."""
    with _env_lock:
        saved = {k: os.environ.get(k) for k in FAST_ENV}
        os.environ.update({k: v for k, v in FAST_ENV.items() if _tighter(k, saved[k], v)})
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _tighter(key: str, user: str | None, ours: str) -> bool:
    """True when our value is stricter than the user's (a user who asked for fewer retries keeps them)."""
    try:
        return user is None or float(ours) < float(user)
    except ValueError:
        return True


def upload_artifacts(client: Any, run_id: str, files: Sequence[Path], artifact_path: str | None = "green_mlops",
                     spool_dir: str | Path | None = None) -> Path | None:
    """Log ``files`` to ``run_id``, failing fast; on failure keep the rest for sync and return where (else None).

    Never raises: the add-on must not fail a finished run over its own files.
    """
    files = [Path(f) for f in files]
    left = list(files)
    kept: Path | None = None
    try:
        with fast_failing():
            while left:
                client.log_artifact(run_id, str(left[0]), artifact_path=artifact_path)
                left.pop(0)
    except Exception as exc:  # unreachable, 5xx, timeout: keep the files for sync
        uri = str(getattr(client, "tracking_uri", "") or "")
        why = redact_text(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", uri)[:300]
        try:
            kept = keep_artifacts(run_id, uri, left, artifact_path, spool_dir)
            log.warning("green_mlops: could not upload %d artifact(s) of run %s to %s (%s); they are kept in %s: "
                        "run `green-mlops sync` when the server is back", len(left), run_id, redact_uri(uri), why, kept)
            left = []
        except OSError as err:
            log.warning("green_mlops: could not upload %d artifact(s) of run %s to %s (%s), nor keep them in the "
                        "spool folder (%s); they stay in %s", len(left), run_id, redact_uri(uri), why,
                        err.strerror or err, left[0].parent)
    finally:
        remove_temp_folders(files, keep=left)
    return kept


def keep_artifacts(run_id: str, tracking_uri: str, files: Sequence[Path], artifact_path: str | None,
                   spool_dir: str | Path | None = None) -> Path:
    """Copy ``files`` to the run's artifact folder in the spool (private); the folder is returned."""
    root = Path(spool_dir) if spool_dir is not None else default_spool_dir()
    make_private_dir(root)
    run_dir = root / f"{check_run_id(run_id)}{SUFFIX}"
    target = run_dir / (artifact_path or "")
    make_private_dir(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    uri_file = run_dir / URI_FILE
    fd = os.open(uri_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w") as fh:
        fh.write(tracking_uri)
    for f in files:
        shutil.copyfile(f, target / f.name)
        os.chmod(target / f.name, FILE_MODE)
    return target


@dataclass
class ArtifactSyncReport:
    """What :func:`sync_artifacts` uploaded, what still waits, and why."""

    uploaded: int = 0
    remaining: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def sync_artifacts(spool_dir: str | Path | None = None, tracking_uri: str | None = None) -> ArtifactSyncReport:
    """Upload every kept artifact in ``spool_dir`` to its run (or to ``tracking_uri``); remove what went."""
    from mlflow.tracking import MlflowClient

    root = Path(spool_dir) if spool_dir is not None else default_spool_dir()
    report = ArtifactSyncReport()
    for run_dir in sorted(root.glob(f"*{SUFFIX}")) if root.is_dir() else []:
        run_id = run_dir.name[: -len(SUFFIX)]
        files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.name != URI_FILE)
        uri = tracking_uri
        try:
            uri = uri or (run_dir / URI_FILE).read_text().strip() or None
            client = MlflowClient(uri)
            with fast_failing():
                while files:
                    rel = files[0].parent.relative_to(run_dir).as_posix()
                    client.log_artifact(check_run_id(run_id), str(files[0]), artifact_path=None if rel == "." else rel)
                    files.pop(0).unlink()
                    report.uploaded += 1
            shutil.rmtree(run_dir)
        except Exception as exc:  # one run's failure must not stop the others
            report.remaining += len(files)
            report.errors[run_id] = redact_text(f"{type(exc).__name__}: {str(exc)[:300]}", uri)
    return report


def remove_temp_folders(files: Sequence[Path], keep: Sequence[Path] = ()) -> None:
    """Remove the temporary folders the files were written in (none of ours holds anything else)."""
    tmp = Path(tempfile.gettempdir()).resolve()
    kept = {Path(k).parent for k in keep}
    for folder in {f.parent for f in files} - kept:
        try:
            if folder.resolve().parent == tmp and folder.name.startswith(TEMP_PREFIX):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass
