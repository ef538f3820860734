"""The Prefect server restarted while runs wait (reliability issue 9).

Real processes only: ``prefect server start`` on SQLite, ``tandem serve`` with its served
deployments, watcher and endpoint, DuckDB. Two set-ups:

* an external server (``tandem serve --prefect-api-url``) killed while work waits and
  started again on the same port and database, ``tandem serve`` running throughout;
* the embedded server (``tandem serve`` starts it): its ``prefect-server`` child killed,
  ``tandem serve`` exits non-zero with a clear message, and is started again on the same
  ``TANDEM_HOME`` and ``PREFECT_HOME`` (what systemd's ``Restart=on-failure`` does).

Either way every dropped file must end up loaded exactly once and published in the marts,
the warehouse must open, and nothing may stay behind in ``intake/pending`` or
``intake/claimed``. Every process started here is killed at the end, also on failure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.app import serve
from tandem.core import published, warehouse
from tandem.core.settings import Settings
from tandem.pipeline import intake
from tests.app.conftest import (
    PrefectServer,
    Served,
    _kill_group,
    _kill_leftovers,
    canonical_file,
    free_port,
    make_home,
    serve_env,
    start_serve,
    stop_serve,
    wait_for,
    wait_serving,
)
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Short windows keep the test quick; the coalescing logic is the same as in production.
# The aggregate window is long enough for an aggregate run to be waiting in it when the
# server goes. A file still waiting in intake/pending TANDEM_INTAKE_RETRY_SECONDS after
# its clinic's last event gets the event again (part of the recovery under test).
TIMING = {
    "TANDEM_INGEST_WINDOW_SECONDS": "4",
    "TANDEM_AGGREGATE_WINDOW_SECONDS": "25",
    "TANDEM_AGGREGATE_QUIET_SECONDS": "1",
    "TANDEM_AGGREGATE_MAX_WAIT_SECONDS": "30",
    "TANDEM_INTAKE_RETRY_SECONDS": "15",
}


class Tracked:
    """Every ``tandem serve`` started by a test, and every child it recorded."""

    def __init__(self) -> None:
        self.serves: list[Served] = []
        self.children: set[int] = set()

    def start(self, settings: Settings, env: dict[str, str], args: list[str],
              prefect_api: str, timeout: float = 240) -> Served:
        srv = start_serve(settings, env, args, prefect_api)
        self.serves.append(srv)
        wait_serving(srv, timeout)
        self.children |= set(self.recorded_children(srv).values())
        return srv

    @staticmethod
    def recorded_children(srv: Served) -> dict[str, int]:
        state = srv.settings.home_dir / "run" / "serve.json"
        return json.loads(state.read_text())["children"] if state.exists() else {}

    def stop_all(self) -> None:
        for srv in self.serves:
            if srv.proc.poll() is None:
                stop_serve(srv)
            elif srv.reader is not None:
                srv.reader.join(5)
        for srv in self.serves:  # children left behind (each has its own group)
            for pid in self.children:
                _kill_leftovers(pid, str(srv.settings.home_dir))


@pytest.fixture
def tracked() -> Iterator[Tracked]:
    t = Tracked()
    try:
        yield t
    finally:
        t.stop_all()


# --- what "survived" means ---------------------------------------------------------------

def _inbox_empty(settings: Settings) -> bool:
    return not [p for p in settings.inbox_dir.rglob("*") if p.is_file()]


def _intake(settings: Settings, stage: str) -> list[str]:
    base = settings.home_dir / "intake" / stage
    return sorted(p.name for p in base.rglob("*") if p.is_file() and p.name != ".meta.json")


def _published_names(srv: Served) -> Counter:
    return Counter(b["source_name"] for b in srv.batches() if b["status"] == "loaded")


def _all_published(srv: Served, names: set[str]) -> bool:
    return names <= set(_published_names(srv))


def warehouse_batches(settings: Settings) -> list[dict]:
    """Every batch in the warehouse (a read-only connection: writers go on)."""
    with warehouse.reader(settings) as con:
        cur = con.execute("SELECT batch_id, source_name, status, content_sha256, "
                          "rows_loaded FROM batch ORDER BY batch_id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def assert_survived(srv: Served, dropped: dict[str, int], by_hand: dict[str, int] | None = None,
                    ) -> None:
    """Each dropped file (name -> rows) loaded once, published; nothing left waiting.

    ``by_hand``: files loaded with ``tandem ingest`` (in the marts, not in intake)."""
    settings = srv.settings
    delivered = dropped
    dropped = {**dropped, **(by_hand or {})}
    batches = warehouse_batches(settings)  # the warehouse opens, and ...
    loaded = Counter(b["source_name"] for b in batches if b["status"] == "loaded")
    assert {n: loaded[n] for n in dropped} == dict.fromkeys(dropped, 1), batches
    assert not [b for b in batches if b["status"] == "failed"], batches
    # A re-run of a file already committed is recorded as duplicate_file, loading nothing.
    assert all(b["rows_loaded"] == 0 for b in batches if b["status"] != "loaded"), batches
    rows = {b["source_name"]: b["rows_loaded"] for b in batches if b["status"] == "loaded"}
    assert {n: rows[n] for n in dropped} == dropped
    # The published marts include every batch (the audit as the dashboard sees it).
    names = _published_names(srv)
    assert {n: names[n] for n in dropped} == dict.fromkeys(dropped, 1), names
    snap, con = published.open_current(settings)
    try:
        last = int(con.execute("SELECT value FROM publish_info "
                               "WHERE key = 'last_batch_id'").fetchone()[0])
        for table, count in snap.tables.items():  # a complete snapshot, not half of one
            assert con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == count  # noqa: S608 - table names come from the snapshot or the test itself
    finally:
        con.close()
    assert last == max(b["batch_id"] for b in batches)
    # Nothing left behind: received, claimed, loaded, kept in done/.
    assert _inbox_empty(settings)
    assert _intake(settings, "pending") == [] and _intake(settings, "claimed") == []
    assert set(delivered) <= set(_intake(settings, "done"))


def drop(srv: Served, dropped: dict[str, int], clinic: str, name: str, first: int,
         clients: int = 4) -> None:
    srv.drop(clinic, name, canonical_file(clinic, range(first, first + clients)))
    dropped[name] = clients * 2 * 4  # ORS at two sessions, four items


def _in_intake(srv: Served, names: set[str], stages: tuple[str, ...]) -> bool:
    there = set()
    for stage in stages:
        there |= set(_intake(srv.settings, stage))
    return names <= there


# --- the tests ---------------------------------------------------------------------------

def test_external_server_restarted_while_runs_wait(tmp_path: Path, tracked: Tracked):
    settings = make_home(tmp_path / "home")
    server = PrefectServer(tmp_path / "prefect-external", free_port(),
                           tmp_path / "prefect-external.log")
    try:
        server.start()
        # Round 1's aggregate run must still wait in its window when round 2 strikes.
        env = serve_env(tmp_path, settings,
                        **{**TIMING, "TANDEM_AGGREGATE_WINDOW_SECONDS": "120"})
        srv = tracked.start(settings, env, ["--prefect-api-url", server.api_url,
                                            "--api-port", str(free_port())], server.api_url)
        dropped: dict[str, int] = {}

        # 1. A batch whose event is lost: loaded by hand while the server is down (the
        #    shell has no PREFECT_API_URL, so its events go to a throw-away server of its
        #    own), and no run is waiting that would notice it.
        server.kill(signal.SIGKILL)
        by_hand = {"by-hand.csv": 4 * 2 * 4}
        path = tmp_path / "by-hand.csv"
        path.write_text(canonical_file("southbank", range(501, 505)))
        cli_env = {**env, "PREFECT_HOME": str(tmp_path / "prefect-shell"),
                   "PREFECT_LOGGING_LEVEL": "WARNING"}
        loaded = subprocess.run(
            [sys.executable, "-m", "tandem.app.cli", "ingest", "--quiet", "--clinic", "southbank",
             str(path)], env=cli_env, cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=240)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        assert srv.batches() == []  # nothing published yet
        server.start()
        wait_for(lambda: _all_published(srv, set(by_hand)), 120,
                 "the batch loaded by hand in the marts", srv, every=0.5)
        assert srv.proc.poll() is None, srv.logs()  # tandem serve rode it out

        # 2. SIGTERM while runs are under way: ingest runs hold their claims, and the
        #    aggregate run of round 1 waits in its window.
        drop(srv, dropped, "northside", "north-2.csv", 301)
        drop(srv, dropped, "southbank", "south-2.csv", 401)
        wait_for(lambda: _in_intake(srv, {"north-2.csv", "south-2.csv"},
                                    ("claimed", "done")), 60,
                 "ingest runs to claim the round-2 files", srv, every=0.05)
        states = Counter(fr["state_type"] for fr in srv.flow_runs("aggregate-on-batches"))
        server.kill(signal.SIGTERM)
        assert states["RUNNING"] == 1, states
        time.sleep(3)
        server.start()
        wait_for(lambda: _all_published(srv, set(dropped)), 150,
                 "the files of round 2 in the marts", srv, every=1)
        assert srv.proc.poll() is None, srv.logs()

        # 3. SIGKILL just after two files were received: their events are in flight and
        #    their ingest runs about to be created or scheduled. A third file arrives
        #    while the server is down (its event has nowhere to go).
        drop(srv, dropped, "northside", "north-3.csv", 1)
        drop(srv, dropped, "southbank", "south-3.csv", 101)
        wait_for(lambda: _in_intake(srv, {"north-3.csv", "south-3.csv"},
                                    ("pending", "claimed", "done")), 30,
                 "the watcher to receive the first files", srv, every=0.05)
        server.kill(signal.SIGKILL)
        drop(srv, dropped, "northside", "north-3b.csv", 201)
        wait_for(lambda: _in_intake(srv, {"north-3b.csv"}, ("pending",)), 30,
                 "the watcher to receive a file while the server is down", srv)
        time.sleep(3)
        server.start()
        wait_for(lambda: _all_published(srv, set(dropped)), 150,
                 "the files of round 3 in the marts", srv, every=0.5)
        assert srv.proc.poll() is None, srv.logs()

        _settle(srv, ("ingest-received",))  # nothing left that could load a file again
        assert_survived(srv, dropped, by_hand)
        stop_serve(srv)
        assert srv.proc.returncode == 0, srv.logs()
    finally:
        tracked.stop_all()
        server.stop()


def test_embedded_server_killed_serve_exits_and_a_restart_completes(tmp_path: Path,
                                                                    tracked: Tracked):
    settings = make_home(tmp_path / "home")
    env = serve_env(tmp_path, settings, **TIMING)
    prefect_port, api_port = free_port(), free_port()
    args = ["--prefect-port", str(prefect_port), "--api-port", str(api_port)]
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    srv = tracked.start(settings, env, args, api_url)
    dropped: dict[str, int] = {}
    drop(srv, dropped, "northside", "north-0.csv", 1)
    wait_for(lambda: _all_published(srv, {"north-0.csv"}), 120, "the first file in the marts",
             srv, every=0.5)
    assert any(fr["state_type"] == "RUNNING" for fr in srv.flow_runs("aggregate-on-batches"))

    # Files received, their runs waiting, the aggregate run in its window: the server dies.
    drop(srv, dropped, "northside", "north-1.csv", 101)
    drop(srv, dropped, "southbank", "south-1.csv", 201)
    wait_for(lambda: _in_intake(srv, {"north-1.csv", "south-1.csv"},
                                ("pending", "claimed", "done")), 30,
             "the watcher to receive the files", srv, every=0.05)
    _kill_group(tracked.recorded_children(srv)["prefect-server"], signal.SIGKILL)

    assert srv.proc.wait(120) == 1, srv.logs()
    srv.reader.join(5)
    said = "".join(srv.output)
    assert "prefect-server exited with code -9 (killed by SIGKILL); stopping the others and " \
           "exiting 1" in said, said
    assert said.rstrip().endswith("stopped"), said
    assert not (settings.home_dir / "run" / "serve.json").exists()
    # Whatever was not loaded waits, recorded, in intake (never lost, never half-done).
    waiting = set(_intake(settings, "pending")) | set(_intake(settings, "claimed"))
    done = set(_intake(settings, "done"))
    assert {"north-1.csv", "south-1.csv"} <= waiting | done
    print(f"after the crash: waiting {sorted(waiting)}, done {sorted(done)}")

    # While it is down another file arrives; then systemd starts it again.
    drop(srv, dropped, "northside", "north-2.csv", 301)
    again = tracked.start(settings, env, args, api_url)
    wait_for(lambda: _all_published(again, set(dropped)), 150,
             "every file in the marts after the restart", again, every=1)
    _settle(again, ("ingest-received",))  # nothing left that could load a file again
    assert_survived(again, dropped)
    stop_serve(again)
    assert again.proc.returncode == 0, again.logs()


def test_a_restart_puts_claimed_files_back_unless_the_earlier_instance_runs(tmp_path: Path):
    """The start-up recovery on its own: a run killed outright left its file claimed."""
    settings = make_home(tmp_path / "home")
    src = settings.inbox_dir / "northside" / "x.csv"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(canonical_file("northside", range(1, 3)))
    assert intake.claim(settings, intake.receive_file(settings, "northside", src, "inbox"))
    said: list[str] = []
    no_server = f"http://127.0.0.1:{free_port()}/api"

    # An earlier tandem serve was killed outright and one of its children still runs:
    # its claims may be live, so nothing is touched.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             start_new_session=True)
    try:
        state = serve.state_path(settings)
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"pid": dead.pid, "children": {"deployments": child.pid}}))
        alive = serve.earlier_instance(settings)
        assert alive == [child.pid]
        serve.recover_unfinished(settings, no_server, said.append, alive)
        assert _intake(settings, "claimed") == ["x.csv"], said
        assert "still run" in said[-1]
    finally:
        _kill_group(child.pid, signal.SIGKILL)
        child.wait(10)

    # Once nothing of it runs, the claimed file goes back to pending; without a server
    # the check of Prefect's runs is a warning, not a failure.
    assert serve.earlier_instance(settings) == []
    serve.recover_unfinished(settings, no_server, said.append, [])
    assert _intake(settings, "pending") == ["x.csv"] and _intake(settings, "claimed") == []
    assert "1 file(s) claimed by a run that did not finish are back" in said[-2]
    assert said[-1].startswith("warning: could not check for runs left unfinished")


def _settle(srv: Served, flows: tuple[str, ...] = ("ingest-received", "aggregate-on-batches"),
            ) -> None:
    """Wait until the event-driven runs of ``flows`` have finished (their windows over)."""
    def settled() -> bool:
        runs = [fr for name in flows for fr in srv.flow_runs(name)]
        return all(fr["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                   for fr in runs)

    wait_for(settled, 90, f"the {' and '.join(flows)} runs to finish", srv, every=1)
