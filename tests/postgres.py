"""A real, private PostgreSQL server for tests, on 127.0.0.1, in a temporary folder.

Uses ``GREEN_MLOPS_TEST_POSTGRES`` (a URL) when set; otherwise runs ``initdb`` and ``pg_ctl`` from the
PostgreSQL install (Debian's /usr/lib/postgresql/N/bin, or PATH) as the ``postgres`` user when run by
root (PostgreSQL refuses to run as root). ``scripts/test.sh`` installs PostgreSQL when it is missing.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.mlflow_server import free_port


def postgres_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres, if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` — a fresh cluster and database, removed afterwards."""

    def __init__(self, password: str | None = None) -> None:
        """``password``: the cluster requires it (scram-sha-256) and ``url`` carries it."""
        self.password = password
        self.url = os.environ.get("GREEN_MLOPS_TEST_POSTGRES") if password is None else None
        self._dir: Path | None = None
        self._bin = postgres_bin()
        self._user: str | None = None

    @property
    def available(self) -> bool:
        return bool(self.url) or self._bin is not None

    def _run(self, *args: str) -> None:
        cmd = [str(self._bin / args[0]), *args[1:]]
        if self._user:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        env = {**os.environ, **({"PGPASSWORD": self.password} if self.password else {})}
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, env=env)

    def __enter__(self) -> PostgresServer:
        if self.url:
            return self
        if self._bin is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self._dir = Path(tempfile.mkdtemp(prefix="green_mlops_pg_"))
        if os.geteuid() == 0:
            self._user = "postgres"
            os.chmod(self._dir, 0o755)
            pw = pwd.getpwnam(self._user)
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
        data = self._dir / "data"
        port = free_port()
        if self.password:
            pwfile = self._dir / "pw"
            pwfile.write_text(self.password + "\n")
            if self._user:
                pw = pwd.getpwnam(self._user)
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            self._run("initdb", "-D", str(data), "-A", "scram-sha-256", f"--pwfile={pwfile}", "-U", "green",
                      "--no-sync")
        else:
            self._run("initdb", "-D", str(data), "-A", "trust", "-U", "green", "--no-sync")
        self._run("pg_ctl", "-D", str(data), "-l", str(self._dir / "pg.log"), "-w", "-o",
                  f"-p {port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self._run("createdb", "-h", "127.0.0.1",
                  "-p", str(port), "-U", "green", "sweeps")
        auth = f"green:{self.password}" if self.password else "green"
        self.url = f"postgresql://{auth}@127.0.0.1:{port}/sweeps"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
