"""``tandem serve`` says where to look, ``tandem health`` says which part is down, and no
child of ``tandem serve`` outlives it, even when it is killed outright (issue 18, item 5;
issue 17, item 4). One real ``tandem serve`` (Prefect server with its UI, deployments,
watcher, endpoint, dashboard, notification automations) for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tandem.core.settings import Settings
from tests.app.conftest import free_port, make_home, serve_env, start_serve, stop_serve, wait_for
from tests.conftest import REPO_ROOT
from tests.flows.servers import Inbox

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def health(settings: Settings, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem.app.cli", "health", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    yield box
    box.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, inbox):
    root = tmp_path_factory.mktemp("serve-health")
    settings = make_home(root / "home")
    prefect_port, api_port, dash_port = free_port(), free_port(), free_port()
    env = serve_env(root, settings, TANDEM_DASHBOARD_PORT=str(dash_port),
                    TANDEM_NOTIFY_EMAIL_TO="ops@clinic.test",
                    TANDEM_NOTIFY_SMTP_HOST="127.0.0.1",
                    TANDEM_NOTIFY_SMTP_PORT=str(inbox.smtp_port),
                    TANDEM_NOTIFY_SMTP_SECURITY="none",
                    TANDEM_NOTIFY_WEBHOOK_URL=inbox.webhook_url)
    srv = start_serve(settings, env, ["--prefect-port", str(prefect_port), "--api-port",
                                      str(api_port), "--ui", "--dashboard"],
                      f"http://127.0.0.1:{prefect_port}/api")
    try:
        wait_for(lambda: any("Press Ctrl+C to stop." in line for line in srv.output), 300,
                 "tandem serve to start", srv)
        yield srv, env, prefect_port, dash_port
    finally:
        stop_serve(srv)


def test_serve_says_where_to_look(served):
    srv, env, prefect_port, dash_port = served
    text = "".join(srv.output)
    ui = f"http://127.0.0.1:{prefect_port}"
    for line in (f"  Prefect UI:      {ui}", f"    runs:          {ui}/runs",
                 f"    events:        {ui}/events", f"    automations:   {ui}/automations",
                 f"  Dashboard:       http://127.0.0.1:{dash_port}",
                 "/v1/clinics/<clinic>/batches",
                 f"  Inboxes:         {srv.settings.inbox_dir}/<clinic>/ (northside, southbank)",
                 "  Notifications:   e-mail to ops@clinic.test via 127.0.0.1:",
                 ", webhook at 127.0.0.1", "  Health:          tandem health"):
        assert line in text, text
    for page in ("runs", "events", "automations"):  # the UI's pages, as a browser asks
        assert httpx.get(f"{ui}/{page}", headers={"Accept": "text/html"},
                         timeout=10).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{dash_port}/_stcore/health",
                     timeout=10).status_code == 200


def test_health_says_every_part_is_up(served):
    srv, env, _, _ = served
    wait_for(lambda: health(srv.settings, env).returncode == 0, 120,
             "health to report every part up")
    proc = health(srv.settings, env)
    assert proc.stdout.rstrip().endswith("Every part is up.")
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    report = json.loads(health(srv.settings, env, "--json").stdout)
    assert report["ok"] is True
    states = {p["name"]: p["state"] for p in report["parts"]}
    assert states == {"tandem serve": "up", "Prefect server": "up", "deployments": "up",
                      "inbox watcher": "up", "batch endpoint": "up", "dashboard": "up",
                      "warehouse": "up", "published marts": "none yet", "notifications": "up"}


def test_a_killed_serve_leaves_no_child_and_health_says_it_is_down(served):
    srv, env, prefect_port, dash_port = served
    state = json.loads((srv.settings.home_dir / "run" / "serve.json").read_text())
    children = state["children"]
    assert set(children) == {"prefect-server", "deployments", "watcher", "api", "dashboard"}
    os.kill(srv.proc.pid, signal.SIGKILL)  # tandem serve alone, no chance to clean up
    srv.proc.wait(10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(alive(p) for p in children.values()):
        time.sleep(0.5)
    assert not [name for name, pid in children.items() if alive(pid)]
    proc = health(srv.settings, env)
    assert proc.returncode == 5
    text = " ".join(proc.stdout.split())
    assert "tandem serve down tandem serve is not running (start it with `tandem serve`)" in text
    assert "2 parts are down: tandem serve and notifications." in text
