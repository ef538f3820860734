"""A real PostgreSQL server for tests and benchmarks, in a temporary folder.

Debian's ``postgresql`` package (``.ci/run`` installs it). Its server refuses to run as root,
so under root it runs as the package's ``postgres`` user (``runuser``); otherwise as the
current user. It listens on 127.0.0.1 on a port of its own, trusts local connections, and is
stopped (fast) by :meth:`PostgresServer.stop`, which every user calls in a ``finally``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "tandem"


def _bin(name: str) -> str:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed "
                                "(apt-get install postgresql)")
    return found


def available() -> bool:
    try:
        _bin("initdb")
        _bin("pg_ctl")
    except FileNotFoundError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``base``: where the test keeps its files; under root the server's own folder is a new
    one in /tmp, owned by ``postgres`` (a test's folder is private to root)."""

    def __init__(self, base: Path, port: int | None = None) -> None:
        self._as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="tandem-pg-")) if self._as_root else base
        self.data = self.base / "pgdata"
        self.log = self.base / "postgres.log"
        self.port = port or free_port()

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self._as_root else list(cmd)
        proc = subprocess.run(full, capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-2000:]}\n{log}")
        return proc

    def start(self) -> PostgresServer:
        self.base.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.base, "postgres")
            os.chmod(self.base, 0o700)
        if not self.data.exists():
            self._run(_bin("initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                      "-E", "UTF8", "--no-sync")
            with (self.data / "postgresql.conf").open("a") as fh:
                fh.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                         f"unix_socket_directories = '{self.base}'\nfsync = off\n"
                         "max_connections = 200\n")
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "120", "start")
        return self

    def stop(self) -> None:
        if self.data.exists():
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                      check=False)
        if self._as_root:
            shutil.rmtree(self.base, ignore_errors=True)

    def restart(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", "fast",
                  "-w", "-t", "120", "restart")

    def create_database(self, name: str) -> None:
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d",
                  "postgres", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"')

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._run(_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                         check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise TimeoutError("PostgreSQL did not come up")
