"""A real ``mlflow server`` for tests, on 127.0.0.1, that can be stopped and started again.

    with MlflowServer(tmp_path / "srv") as server:   # started, answering /health
        client = MlflowClient(server.uri)
        ...
        server.stop()      # the port refuses connections: an outage
        server.start()     # same port, same SQLite store, same artifacts: the runs are still there
        server.restart()   # stop + start

The store is ``sqlite:///<root>/mlflow.db`` and artifacts go to ``<root>/artifacts``; the server's
output goes to ``<root>/server.log`` (its tail is in the error when it does not come up). The server
runs in its own process group, so ``stop()`` also ends the uvicorn process it starts. Starting takes
a few seconds (about 8 s the first time, when the database schema is created; 5 s afterwards on two
cores), so tests that can share one server should (a module-scoped fixture) and stop it only to
simulate an outage.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["MlflowServer", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """An ``mlflow server`` subprocess on ``127.0.0.1:port`` backed by SQLite under ``root``."""

    def __init__(self, root: str | Path, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.store_uri = f"sqlite:///{self.root / 'mlflow.db'}"
        self.log_path = self.root / "server.log"
        # MLflow 3 also starts a job runner (huey) beside the server; tests need none, and it costs
        # a CPU-bound process at every start. Pass env to change this or add settings.
        self.env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers(self, timeout: float = 1.0) -> bool:
        """True when the server answers ``/health``."""
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=timeout) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout: float = 60.0) -> MlflowServer:
        """Start the server (no-op if it runs) and wait until it answers; raises with its log if it does not."""
        if self.running:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
               "--backend-store-uri", self.store_uri, "--default-artifact-root", str(self.root / "artifacts"),
               "--workers", "1"]
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"mlflow server on port {self.port} exited with code {code}:\n{self._tail()}")
            if self.answers():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer on {self.uri} within {timeout} s:\n{self._tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and everything it started; afterwards the port refuses connections."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self._signal(signal.SIGKILL)  # stragglers of the group (uvicorn workers), if any
        self.proc = None

    def restart(self, timeout: float = 60.0) -> MlflowServer:
        """Stop, then start on the same port with the same store."""
        self.stop()
        return self.start(timeout)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # type: ignore[union-attr]
        except (ProcessLookupError, PermissionError):
            pass

    def _tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server log)"

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
