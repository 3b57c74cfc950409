"""Start ``transformers serve`` (Transformers' own OpenAI-compatible server) on a local model and wait until it answers.

Used by the tests and the GPU benchmark: the server runs offline (no Hub access, no update check),
preloads the one model it serves, and uses continuous batching. Its output goes to a log file whose
tail is shown if it fails to start.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from green_mlops.extras import check

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TransformersServer:
    """``with TransformersServer(model_dir) as s:`` → ``s.url`` answers OpenAI requests for model ``s.model``."""

    def __init__(self, model_dir: str | Path, *, port: int | None = None, device: str = "cpu", dtype: str = "auto",
                 continuous_batching: bool = True, extra_args: tuple[str, ...] = (), log_path: str | Path | None = None,
                 start_timeout_s: float = 300.0, env: dict[str, str] | None = None) -> None:
        check("transformers", "transformers")  # the server is a subprocess: no need to import it here
        self.model = str(model_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "transformers.cli.transformers", "serve", self.model,
                     "--host", "127.0.0.1", "--port", str(self.port), "--device", device, "--dtype", dtype,
                     "--continuous-batching" if continuous_batching else "--no-continuous-batching", *extra_args]
        self.log_path = Path(log_path) if log_path else Path(self.model) / "serve.log"
        self.start_timeout_s = start_timeout_s
        self.env = {**os.environ, **OFFLINE_ENV, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TransformersServer:
        """Launch the server and block until ``/health`` answers; raise RuntimeError with the log's tail if not."""
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"transformers serve did not answer within {self.start_timeout_s:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 20 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
