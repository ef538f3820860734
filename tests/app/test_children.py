"""No child outlives a ``tandem`` command, whatever signal ends it (issue 17, item 4), and
the dashboard listens on loopback unless told otherwise (issue 17, item 5).

Each command runs in a session of its own, so every process it starts (and that does not
start a session itself) keeps that session id, even after it is re-parented to init: an
empty session after the command ends means nothing was left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT, canonical_rows
from tests.flows.servers import free_port

pytestmark = pytest.mark.slow


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of every process in session ``sid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # state ppid pgrp session ...
            out[int(entry.name)] = cmdline
    return out


def listening(port: int) -> set[str]:
    """The local addresses listening on ``port`` (IPv4 and IPv6, from /proc/net)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in list(fh)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    if width == 8:
                        found.add(".".join(str(int(address[i:i + 2], 16))
                                           for i in (6, 4, 2, 0)))
                    else:
                        found.add("::" if set(address) == {"0"} else address)
    return found


def start(home: Path, *args: str, **env: str) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_API"))}
    full.update(TANDEM_HOME=str(home), TANDEM_PSEUDONYM_KEY="test-only-key",
                PYTHONPATH=str(REPO_ROOT), **env)
    return subprocess.Popen([sys.executable, "-m", "tandem.app.cli", *args], env=full,
                            cwd=home.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def wait(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the command ended early:\n{proc.stdout.read()}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def kill_session(sid: int) -> None:
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def assert_nothing_left(proc: subprocess.Popen, port: int | None = None) -> None:
    sid = proc.pid
    try:
        proc.wait(30)
        wait(lambda: not session_processes(sid), 20, "the command's children to end")
        if port is not None:
            wait(lambda: not listening(port), 10, "the port to close")
    finally:
        kill_session(sid)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "data_contracts" / "clinics").mkdir(parents=True)
    (home / "data_contracts" / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    return home


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_dashboard_listens_on_loopback_and_stops_with_its_command(home, sig):
    port = free_port()
    proc = start(home, "dashboard", "--port", str(port))
    try:
        addresses = wait(lambda: listening(port), 120, "the dashboard to listen", proc)
        assert addresses == {"127.0.0.1"}
        children = session_processes(proc.pid)
        assert any("streamlit" in cmd for cmd in children.values()), children
    except BaseException:
        kill_session(proc.pid)
        raise
    os.kill(proc.pid, sig)  # the command only, not its group
    assert_nothing_left(proc, port)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0
        output = proc.stdout.read()
        assert "listening on 127.0.0.1 only" in output and "Network URL" not in output


def test_the_dashboard_serves_another_address_only_when_told(home):
    port = free_port()
    proc = start(home, "dashboard", "--port", str(port),
                 TANDEM_DASHBOARD_ADDRESS="0.0.0.0")
    try:
        assert wait(lambda: listening(port), 120, "the dashboard to listen", proc) == \
            {"0.0.0.0"}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert_nothing_left(proc, port)


def test_a_killed_ingest_leaves_no_server_behind(tmp_path):
    """Without a Prefect server configured, ingest starts none (it used to start a
    temporary one, left running when the command was killed)."""
    home = tmp_path / "fresh"
    gen = start(home, "generate", "--clinics", "2", "--clients-per-clinic", "40", "--quiet")
    assert gen.wait(300) == 0, gen.stdout.read()  # installs the clinics' contracts too
    proc = start(home, "ingest", str(home / "synthetic" / "files"))
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 8  # long enough for Prefect to have started a server
        while time.monotonic() < deadline and proc.poll() is None:
            seen.update(session_processes(proc.pid))
            time.sleep(0.2)
    finally:
        if proc.poll() is None:  # killed mid-run, as an impatient user or an OOM killer would
            os.kill(proc.pid, signal.SIGKILL)
        assert_nothing_left(proc)
    # Its only children are the reader worker (tandem.pipeline.isolation: multiprocessing's
    # fork server and resource tracker), never a server.
    others = {pid: cmd for pid, cmd in seen.items() if pid != proc.pid
              and "from multiprocessing." not in cmd}
    assert not others, f"ingest started other processes: {others}"
    assert not any("prefect" in cmd for cmd in seen.values()), seen


def test_an_ingest_that_returns_leaves_its_session_empty_at_once(tmp_path):
    """multiprocessing's fork server and resource tracker (the reader worker's helpers) used
    to end a moment after the command, re-parented to init, and stay as zombies."""
    home = tmp_path / "fresh"
    (home / "data_contracts" / "clinics").mkdir(parents=True)
    (home / "data_contracts" / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    delivery = tmp_path / "northside_2026-01.csv"
    delivery.write_text(HEADER + canonical_rows("C1", "T01", "2026-01-05", 1, "ORS",
                                                [5, 6, 7, 8]))
    proc = start(home, "ingest", str(delivery), TANDEM_MIN_CELL_SIZE="1")
    try:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        left = session_processes(proc.pid)  # the moment it returned: no waiting
        assert not left, f"still running after the command returned: {left}"
    finally:
        kill_session(proc.pid)


def test_sigterm_to_demo_leaves_nothing_running(home):
    port = free_port()
    proc = start(home, "demo", TANDEM_DASHBOARD_PORT=str(port))
    try:
        wait(lambda: listening(port), 600, "the demo to serve its dashboard", proc)
    except BaseException:
        kill_session(proc.pid)
        raise
    os.kill(proc.pid, signal.SIGTERM)
    assert_nothing_left(proc, port)
    assert proc.returncode == 0
