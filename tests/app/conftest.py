"""A real ``tandem serve`` (Prefect server, served deployments, watcher, endpoint) per module.

Everything runs as it would in production, in subprocesses on free loopback ports with
their own TANDEM_HOME and PREFECT_HOME under a temporary folder. Every process is killed
at the end, also when a test fails or the start-up times out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest

from tandem.core import published
from tandem.core.settings import Settings
from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT

SOUTHBANK_CONTRACT = CLINIC_CONTRACT.replace("northside", "southbank").replace(
    "Northside", "Southbank")
CLINICS = ("northside", "southbank")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    settings: Settings
    proc: subprocess.Popen
    prefect_api: str
    endpoint: str
    output: list[str]
    reader: threading.Thread | None = None

    @property
    def home(self) -> Path:
        return self.settings.home_dir

    def drop(self, clinic: str, name: str, text: str) -> Path:
        """Deliver like a clinic should: write ``name.part``, then rename it."""
        folder = self.settings.inbox_dir / clinic
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / f"{name}.part"
        part.write_text(text, encoding="utf-8")
        os.rename(part, folder / name)
        return folder / name

    def batches(self) -> list[dict]:
        """The published audit of batches (what the dashboard sees)."""
        opened = published.open_current(self.settings)
        if opened is None:
            return []
        snap, con = opened
        try:
            cur = con.execute("SELECT batch_id, clinic_id, source_name, status, trigger, "
                              "rows_loaded, content_sha256 FROM audit_batch ORDER BY batch_id")
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        except duckdb.Error:
            return []
        finally:
            con.close()

    def flow_runs(self, flow_name: str, since: float | None = None) -> list[dict]:
        body: dict = {"flows": {"name": {"any_": [flow_name]}}, "limit": 200}
        r = httpx.post(f"{self.prefect_api}/flow_runs/filter", json=body, timeout=10)
        r.raise_for_status()
        runs = r.json()
        if since is not None:
            import datetime as dt

            cutoff = dt.datetime.fromtimestamp(since, dt.UTC)
            runs = [fr for fr in runs
                    if dt.datetime.fromisoformat(fr["created"].replace("Z", "+00:00")) >= cutoff]
        return runs

    def logs(self) -> str:
        out = []
        for f in sorted((self.home / "logs").glob("*.log")):
            out.append(f"==== {f.name}\n" + f.read_text(errors="replace")[-4000:])
        return "\n".join(out) + "\n==== serve\n" + "".join(self.output[-50:])


def wait_for(check: Callable[[], object], timeout: float, what: str,
             served: Served | None = None, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if served is not None and served.proc.poll() is not None:
            break
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}"
                         + (f"\n{served.logs()}" if served else ""))


def canonical_file(clinic: str, clients: range, start_day: int = 5) -> str:
    """A small valid canonical CSV: ORS at two sessions for each client."""
    lines = [HEADER]
    for c in clients:
        therapist = "T01" if c % 2 else "T02"
        for s, day in ((1, start_day), (2, start_day + 7)):
            for item in range(1, 5):
                lines.append(f"{clinic},C{c:05d},{therapist},2026-01-{day:02d},{s},ORS,{item},"
                             f"{(c + item + s) % 9 + 1}\n")
    return "".join(lines)




@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    settings = make_home(root / "home")
    prefect_port, api_port = free_port(), free_port()
    env = serve_env(root, settings)
    srv = start_serve(settings, env, ["--prefect-port", str(prefect_port),
                                      "--api-port", str(api_port)],
                      f"http://127.0.0.1:{prefect_port}/api")
    try:
        wait_serving(srv, 240)
        yield srv
    finally:
        stop_serve(srv)


def make_home(home: Path) -> Settings:
    """A TANDEM_HOME with contracts for both test clinics."""
    settings = Settings(home=home)
    settings.ensure_dirs()
    clinics = settings.local_contracts_dir / "clinics"
    (clinics / "northside.yaml").write_text(CLINIC_CONTRACT)
    (clinics / "southbank.yaml").write_text(SOUTHBANK_CONTRACT)
    return settings


def serve_env(root: Path, settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment ``tandem serve`` runs with in these tests (short windows)."""
    env = {
        **os.environ,
        "TANDEM_HOME": str(settings.home),
        "TANDEM_PSEUDONYM_KEY": "test-only-key",
        "TANDEM_MIN_CELL_SIZE": "1",
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        # Short windows keep the tests quick; the coalescing logic is the same.
        "TANDEM_INBOX_STABLE_SECONDS": "0.5",
        "TANDEM_INGEST_WINDOW_SECONDS": "5",
        "TANDEM_AGGREGATE_WINDOW_SECONDS": "40",
        "TANDEM_AGGREGATE_QUIET_SECONDS": "2",
        "TANDEM_AGGREGATE_MAX_WAIT_SECONDS": "90",
        **overrides,
    }
    env.pop("PREFECT_API_URL", None)
    return env


def start_serve(settings: Settings, env: dict[str, str], args: list[str],
                prefect_api: str) -> Served:
    """``tandem serve --no-ui ARGS`` in its own session; its output is collected."""
    api_port = args[args.index("--api-port") + 1]
    cmd = [sys.executable, "-m", "tandem.app.cli", "serve", "--no-ui", "--no-dashboard", *args]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: [output.append(line) for line in proc.stdout],
                              daemon=True)
    reader.start()
    return Served(settings, proc, prefect_api, f"http://127.0.0.1:{api_port}", output,
                  reader)


def wait_serving(srv: Served, timeout: float) -> None:
    wait_for(lambda: any("Press Ctrl+C to stop." in line for line in srv.output), timeout,
             "tandem serve to start", srv)


def stop_serve(srv: Served) -> None:
    """SIGTERM, then SIGKILL; and every child it recorded (each has its own group)."""
    state = srv.settings.home_dir / "run" / "serve.json"
    children = json.loads(state.read_text())["children"] if state.exists() else {}
    _kill_group(srv.proc.pid, signal.SIGTERM)
    try:
        srv.proc.wait(60)
    except subprocess.TimeoutExpired:
        _kill_group(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
    for pid in children.values():  # each child has its own process group
        _kill_group(pid, signal.SIGKILL)
    if srv.reader is not None:
        srv.reader.join(5)


class PrefectServer:
    """``python -m prefect server start`` with its own PREFECT_HOME, restartable; its
    database SQLite under that home, or ``database_url`` (PostgreSQL)."""

    def __init__(self, prefect_home: Path, port: int, log_path: Path,
                 database_url: str | None = None) -> None:
        self.prefect_home, self.port, self.log_path = prefect_home, port, log_path
        self.database_url = database_url
        self.proc: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 180) -> None:
        env = {**os.environ, "PREFECT_HOME": str(self.prefect_home),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        env.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(self.healthy, timeout, f"the Prefect server on port {self.port}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + self.log_path.read_text(errors="replace")[-3000:]) \
                from exc

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the Prefect server exited ({self.proc.returncode}):\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        _kill_group(self.proc.pid, sig)  # our child, not yet waited for: its pid is ours
        self.proc.wait(60)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        _kill_leftovers(self.proc.pid, str(self.prefect_home))


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_leftovers(pgid: int, marker: str) -> None:
    """SIGKILL what is left of a process group this test started, by pid.

    Its leader may be gone and its id reused, so only members whose environment names
    this test's folder (``marker``) are killed.
    """
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or marker.encode() not in (proc / "environ").read_bytes():
                continue
            os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue
