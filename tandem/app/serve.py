"""``tandem serve``: everything a data engineer runs in production, on one machine.

Five child processes, started in this order and stopped in the reverse one:

1. a self-hosted Prefect server (``prefect server start``; SQLite under
   ``TANDEM_HOME/prefect`` unless ``PREFECT_API_DATABASE_CONNECTION_URL`` names PostgreSQL),
   skipped when ``--prefect-api-url`` points at a server that runs elsewhere;
2. the served deployments (``python -m flows.deployments``): event triggers, schedules and
   the notification automations (flows/notify.py);
3. the inbox watcher (``python -m tandem.app.watcher``);
4. the batch endpoint (``python -m tandem.app.api``);
5. the dashboard (Streamlit, on ``TANDEM_DASHBOARD_ADDRESS``, loopback by default).

The watcher and endpoint start only once the deployments and their triggers exist, so
no event is sent before something listens. Before the runner starts, work an earlier
instance left half-done is put back (:func:`recover_unfinished`): files claimed by a run
that never finished return to ``intake/pending`` (the watcher then re-sends their events),
and runs that Prefect still shows as pending or running are marked crashed. Each child
runs in its own process group and logs to ``TANDEM_HOME/logs/<name>.log``. Ctrl+C or
SIGTERM stops them all (a child that ignores SIGTERM is killed after a grace period); if
one dies, the rest are stopped too and the command exits non-zero, for systemd or a
container runtime to restart. If ``tandem serve`` itself is killed outright (SIGKILL),
the kernel sends each child SIGTERM (:mod:`tandem.app.children`): none outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from tandem.app.children import die_with_parent
from tandem.core.runtime import library_defaults
from tandem.core.settings import Settings

EVENT_DEPLOYMENTS = ("on-file-received", "on-batch-finished")
# (flow, deployment) of everything flows.deployments serves.
SERVED_DEPLOYMENTS = (("ingest-received", "on-file-received"),
                      ("aggregate-on-batches", "on-batch-finished"),
                      ("ingest", "manual"), ("aggregate", "manual"),
                      ("sweep", "nightly"), ("quality-summary", "daily"))


@dataclass
class Child:
    name: str
    cmd: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("ab")
        # Its own session (Ctrl+C in the terminal reaches only tandem serve, which stops
        # the children in order), and SIGTERM from the kernel if tandem serve dies.
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=cwd, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True,
                                     preexec_fn=die_with_parent())  # noqa: PLW1509

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float) -> None:
        """SIGTERM to the whole process group, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        _signal_group(self.proc.pid, signal.SIGKILL)  # stragglers (flow-run processes)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.log:
            self.log.close()


# The runner is started again at most this many times within this many seconds.
RUNNER_RESTARTS, RUNNER_RESTART_WINDOW = 5, 600.0


def _may_restart(restarts: list[float]) -> bool:
    """Record a restart if fewer than RUNNER_RESTARTS happened in the window."""
    now = time.monotonic()
    restarts[:] = [t for t in restarts if now - t < RUNNER_RESTART_WINDOW]
    if len(restarts) >= RUNNER_RESTARTS:
        return False
    restarts.append(now)
    return True


def _how(returncode: int) -> str:
    """' (killed by SIGKILL)' for a negative return code."""
    try:
        return f" (killed by {signal.Signals(-returncode).name})" if returncode < 0 else ""
    except ValueError:
        return ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Stop(Exception):
    """Raised in the main loop by SIGTERM / SIGINT."""


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    api_port: int = 8765
    prefect_api_url: str | None = None  # an external server: do not start one
    ui: bool = True
    watcher: bool = True
    api: bool = True
    work_pool: str | None = None  # register the deployments with it; workers run them
    dashboard: bool = True
    startup_timeout: float = 180.0


def child_env(settings: Settings, api_url: str, ui: bool) -> dict[str, str]:
    """The children's environment: the library defaults (core.runtime), then what serving
    needs. PREFECT_HOME set by the operator wins; the rest is this instance's own."""
    env = {**library_defaults(settings), **os.environ}
    env.update({
        "TANDEM_HOME": str(settings.home_dir),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Run logs (files claimed, rows loaded) reach the UI at INFO; the CLI's WARNING
        # default is for interactive use.
        "PREFECT_LOGGING_LEVEL": settings.serve_log_level,
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        # The runner looks for triggered runs every second (default 10): latency.
        "PREFECT_RUNNER_POLL_FREQUENCY": env.get("PREFECT_RUNNER_POLL_FREQUENCY", "1"),
        "GX_ANALYTICS_ENABLED": "false",
        # Children run in TANDEM_HOME: keep its folders (data_contracts/) off sys.path.
        "PYTHONSAFEPATH": "1",
    })
    return env


def _wait(check: Callable[[], bool], timeout: float, what: str,
          children: list[Child]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited while waiting for {what}; see {c.log_path}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _server_healthy(api_url: str) -> bool:
    return httpx.get(f"{api_url}/health", timeout=2).status_code == 200


def _triggers_ready(api_url: str) -> bool:
    r = httpx.post(f"{api_url}/deployments/filter", timeout=5,
                   json={"deployments": {"name": {"any_": list(EVENT_DEPLOYMENTS)}}})
    if r.status_code != 200 or len(r.json()) < len(EVENT_DEPLOYMENTS):
        return False
    r = httpx.post(f"{api_url}/automations/filter", timeout=5, json={})
    return r.status_code == 200 and len(r.json()) >= len(EVENT_DEPLOYMENTS)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def earlier_instance(settings: Settings) -> list[int]:
    """PIDs of an earlier ``tandem serve`` (or its children) that still run.

    ``run/serve.json`` is removed on every stop ``tandem serve`` sees; it is left only
    when that process was killed outright, and then its children may live on.
    """
    try:
        info = json.loads(state_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    pids = [info.get("pid"), *(info.get("children") or {}).values()]
    return [pid for pid in pids if _alive(pid)]


def crash_orphaned_runs(api_url: str) -> int:
    """Mark runs of the served deployments that Prefect shows as pending or running as
    crashed; called before the runner starts, so no process of theirs exists any more.

    Their files went back to intake/pending and run again. Left as they were, they would
    show as running for ever, and a running ``aggregate-on-batches`` would hold its
    deployment's only concurrency slot for ever: the Prefect server keeps slot leases in
    memory, so after a restart nothing expires them and every later run would wait.
    Forcing a final state releases the slot.
    """
    ids = []
    for flow_name, name in SERVED_DEPLOYMENTS:
        r = httpx.get(f"{api_url}/deployments/name/{flow_name}/{name}", timeout=10)
        if r.status_code == 200:
            ids.append(r.json()["id"])
    if not ids:
        return 0
    r = httpx.post(f"{api_url}/flow_runs/filter", timeout=10, json={
        "flow_runs": {"deployment_id": {"any_": ids},
                      "state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}},
        "limit": 200})
    r.raise_for_status()
    for run in r.json():
        httpx.post(f"{api_url}/flow_runs/{run['id']}/set_state", timeout=10, json={
            "state": {"type": "CRASHED", "name": "Crashed",
                      "message": "Its process ended with the previous tandem serve (Prefect "
                                 "server or runner stopped); its files run again."},
            "force": True}).raise_for_status()
    return len(r.json())


def recover_unfinished(settings: Settings, api_url: str, say: Callable[[str], None],
                       alive: list[int]) -> None:
    """Put back what an earlier instance left half-done (before the runner starts);
    ``alive``: :func:`earlier_instance`, read before this instance wrote its own state."""
    from tandem.pipeline import intake

    if alive:
        say(f"warning: processes of an earlier tandem serve still run (pids "
            f"{', '.join(map(str, alive))}); their claimed files and runs are left alone")
        return
    released = intake.release_claims(settings)
    if released:
        say(f"{len(released)} file(s) claimed by a run that did not finish are back in "
            "intake/pending")
    try:
        crashed = crash_orphaned_runs(api_url)
    except Exception as exc:  # noqa: BLE001 - best effort: never stops the start
        say(f"warning: could not check for runs left unfinished: {exc}")
        return
    if crashed:
        say(f"{crashed} run(s) left unfinished by the previous instance marked crashed")


def state_path(settings: Settings) -> Path:
    """Where a running ``tandem serve`` records its children and URLs (for ops and tests)."""
    return settings.home_dir / "run" / "serve.json"


def _dashboard_url(settings: Settings) -> str:
    host = settings.dashboard_address
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:" \
           f"{settings.dashboard_port}"


def _write_state(settings: Settings, started: list[Child], api_url: str,
                 opts: ServeOptions) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({
        "pid": os.getpid(), "prefect_api_url": api_url,
        "prefect_ui": api_url.removesuffix("/api") if opts.ui else None,
        "batch_endpoint": f"http://{opts.host}:{opts.api_port}" if opts.api else None,
        "dashboard": _dashboard_url(settings) if opts.dashboard else None,
        "inbox": str(settings.inbox_dir) if opts.watcher else None,
        "children": {c.name: c.proc.pid for c in started if c.proc},
    }, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def where_to_look(settings: Settings, opts: ServeOptions, ui_url: str,
                  logs: Path) -> list[str]:
    """The lines ``tandem serve`` prints once everything answers."""
    from flows.notify import destinations

    clinics = sorted(p.name for p in settings.inbox_dir.iterdir() if p.is_dir())
    lines = ["Tandem is serving"]
    if opts.ui:
        lines += [f"  Prefect UI:      {ui_url}",
                  f"    runs:          {ui_url}/runs",
                  f"    events:        {ui_url}/events",
                  f"    automations:   {ui_url}/automations"]
    else:
        lines.append(f"  Prefect API:     {ui_url}/api (UI disabled)")
    if opts.dashboard:
        lines.append(f"  Dashboard:       {_dashboard_url(settings)}")
    if opts.api:
        lines.append(f"  Batch endpoint:  http://{opts.host}:{opts.api_port}"
                     "/v1/clinics/<clinic>/batches")
    if opts.watcher:
        lines.append(f"  Inboxes:         {settings.inbox_dir}/<clinic>/ "
                     f"({', '.join(clinics) or 'none yet'})")
    if opts.work_pool:
        lines.append(f"  Work pool:       {opts.work_pool} (start workers with "
                     f"`tandem worker --pool {opts.work_pool}`)")
    where = destinations(settings)
    lines.append(f"  Notifications:   {', '.join(where) if where else 'none configured'}")
    lines += [f"  Logs:            {logs}",
              "  Health:          tandem health",
              "Press Ctrl+C to stop."]
    return lines


def run(settings: Settings, opts: ServeOptions, say: Callable[[str], None] = print) -> int:
    """Start everything, wait for Ctrl+C / SIGTERM or a child's death, stop everything."""
    settings.ensure_dirs()
    earlier = earlier_instance(settings)
    logs = settings.home_dir / "logs"
    api_url = (opts.prefect_api_url or f"http://{opts.host}:{opts.prefect_port}/api").rstrip("/")
    ui_url = api_url.removesuffix("/api")
    env = child_env(settings, api_url, opts.ui)
    py = sys.executable
    children: list[Child] = []
    if not opts.prefect_api_url:
        children.append(Child("prefect-server", [
            py, "-m", "prefect", "server", "start", "--host", opts.host,
            "--port", str(opts.prefect_port)], logs / "prefect-server.log"))
    children.append(Child("deployments", [py, "-m", "flows.deployments", *(
        ["--work-pool", opts.work_pool] if opts.work_pool else [])], logs / "deployments.log"))
    if opts.watcher:
        children.append(Child("watcher", [py, "-m", "tandem.app.watcher"], logs / "watcher.log"))
    if opts.api:
        children.append(Child("api", [py, "-m", "tandem.app.api", "--host", opts.host,
                                      "--port", str(opts.api_port)], logs / "api.log"))
    if opts.dashboard:
        from tandem.app.dashboard_cli import dashboard_cmd

        children.append(Child("dashboard", dashboard_cmd(settings, settings.dashboard_port,
                                                         settings.dashboard_address),
                              logs / "dashboard.log"))

    def _stop(signum, frame):  # noqa: ARG001
        raise Stop()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    started: list[Child] = []
    code = 0
    try:
        for child in children:
            if child.name == "deployments":
                _wait(lambda: _server_healthy(api_url), opts.startup_timeout,
                      "the Prefect server", started)
                if not opts.work_pool:  # workers elsewhere may be running them now
                    recover_unfinished(settings, api_url, say, earlier)
            if child.name in ("watcher", "api"):
                _wait(lambda: _triggers_ready(api_url), opts.startup_timeout,
                      "deployments and triggers", started)
            child.start(env, settings.home_dir)
            started.append(child)
            _write_state(settings, started, api_url, opts)
            if child.name == "prefect-server":
                _wait(lambda: _server_healthy(api_url), opts.startup_timeout,
                      "the Prefect server", started)
        if not opts.watcher and not opts.api:
            _wait(lambda: _triggers_ready(api_url), opts.startup_timeout,
                  "deployments and triggers", started)
        if opts.api:
            _wait(lambda: httpx.get(f"http://{opts.host}:{opts.api_port}/health",
                                    timeout=2).status_code == 200,
                  opts.startup_timeout, "the batch endpoint", started)
        if opts.dashboard:
            _wait(lambda: httpx.get(f"{_dashboard_url(settings)}/_stcore/health",
                                    timeout=2).status_code == 200,
                  opts.startup_timeout, "the dashboard", started)
        for line in where_to_look(settings, opts, ui_url, logs):
            say(line)
        restarts: list[float] = []
        while True:
            for c in started:
                if not c.alive() and c.name == "deployments" and _may_restart(restarts):
                    # Prefect's runner gives up when its server is away too long (an outage,
                    # a restart): start it again once the server answers, a few times.
                    rc = c.proc.returncode
                    say(f"deployments exited with code {rc}{_how(rc)}; starting it again "
                        "once the Prefect server answers")
                    c.stop(grace=5)  # and the flow runs it started (its process group)
                    _wait(lambda: _server_healthy(api_url), opts.startup_timeout,
                          "the Prefect server", [x for x in started if x is not c])
                    if not opts.work_pool:  # its runs died with it: put their work back
                        recover_unfinished(settings, api_url, say, [])
                    c.start(env, settings.home_dir)
                    _write_state(settings, started, api_url, opts)
                    continue
                if not c.alive():
                    rc = c.proc.returncode
                    say(f"{c.name} exited with code {rc}{_how(rc)}; stopping the others and "
                        f"exiting 1 for the service manager to restart Tandem (see "
                        f"{c.log_path}). Files not loaded yet wait in intake/ and are "
                        "picked up on the next start.")
                    code = 1
                    raise Stop()
            time.sleep(0.5)
    except Stop:
        pass
    except RuntimeError as exc:
        say(f"could not start: {exc}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping ...")
        for child in reversed(started):
            child.stop(grace=20 if child.name in ("deployments", "prefect-server") else 10)
        for s, h in old.items():
            signal.signal(s, h)
        state_path(settings).unlink(missing_ok=True)
        say("stopped")
    return code
