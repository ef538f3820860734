"""``tandem health`` names the part that is down (the whole service is tried in
test_serve_and_health.py): here ``run/serve.json`` names a live process as the service and
addresses where nothing answers, as after a child crashed and before serve noticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.flows.servers import free_port


def test_health_names_each_part_that_is_down(tmp_path: Path):
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    try:
        (home / "run" / "serve.json").write_text(json.dumps({
            "pid": sleeper.pid, "prefect_api_url": f"http://127.0.0.1:{free_port()}/api",
            "batch_endpoint": f"http://127.0.0.1:{free_port()}", "dashboard": None,
            "children": {"deployments": sleeper.pid, "watcher": gone.pid}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_"))}
        env.update(TANDEM_HOME=str(home), PYTHONPATH=str(REPO_ROOT), COLUMNS="80")
        proc = subprocess.run([sys.executable, "-m", "tandem.app.cli", "health", "--json"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 5, proc.stderr
    report = json.loads(proc.stdout)
    parts = {p["name"]: p for p in report["parts"]}
    assert report["ok"] is False
    assert parts["tandem serve"]["state"] == "up"
    assert parts["Prefect server"]["state"] == "down"
    assert parts["Prefect server"]["detail"].startswith("does not answer at http://127.0.0.1:")
    assert parts["deployments"]["state"] == "up"
    assert parts["inbox watcher"]["state"] == "down"
    assert parts["inbox watcher"]["detail"] == \
        f"pid {gone.pid} has exited (see logs/watcher.log)"
    assert parts["batch endpoint"]["state"] == "down"
    assert parts["dashboard"]["state"] == "off"
    assert parts["notifications"]["state"] == "off"
