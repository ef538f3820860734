"""A newcomer's first hour, end to end, as docs/operations.md walks through it: real
processes only (``tandem ...`` commands, ``tandem serve`` with its own Prefect server, a
local SMTP server), on a fresh TANDEM_HOME.

generate -> contracts install -> ingest the folder -> aggregate -> a late delivery from a
therapist not on the roster (its rows quarantined; the quarantine e-mail arrives) -> the
roster fixed -> reprocess -> aggregate: the therapist's figures are published.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tandem.core import published
from tandem.core.settings import Settings
from tests.app.conftest import free_port, serve_env, start_serve, stop_serve, wait_serving
from tests.conftest import HEADER, REPO_ROOT
from tests.flows.servers import Inbox

pytestmark = pytest.mark.slow

NEW_THERAPIST = "T09"
LATE_FILE = "northside_2026-06_late.csv"


def late_delivery(clients: int = 10) -> str:
    """Northside's late file: ten new clients seen twice by T09 (ORS and SRS)."""
    lines = [HEADER]
    for c in range(clients):
        for session, day in ((1, "2026-06-08"), (2, "2026-06-15")):
            for instrument in ("ORS", "SRS"):
                for item in range(1, 5):
                    score = (c + item + session) % 7 + 2
                    lines.append(f"northside,NO-9{c:05d},{NEW_THERAPIST},{day},{session},"
                                 f"{instrument},{item},{score}\n")
    return "".join(lines)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    try:
        yield box
    finally:
        box.close()


def therapist_row(settings: Settings) -> dict | None:
    """The published completeness figure of the new therapist (what the dashboard shows)."""
    snap = published.current(settings)
    assert snap is not None
    rows = published.query_snapshot(
        snap, "SELECT sessions, n_clients, suppressed FROM dir_completeness "
              "WHERE clinic_id = 'northside' AND therapist_id = ?", [NEW_THERAPIST], settings)
    return dict(zip(("sessions", "n_clients", "suppressed"), rows[0], strict=True)) \
        if rows else None


def northside_sessions(settings: Settings) -> int:
    snap = published.current(settings)
    [(n,)] = published.query_snapshot(
        snap, "SELECT count(*) FROM episode_session WHERE clinic_id = 'northside'", None,
        settings)
    return int(n)


def test_a_newcomers_first_hour(tmp_path: Path, inbox: Inbox):
    home = tmp_path / "first-hour"
    settings = Settings(home=home)
    settings.ensure_dirs()
    env = serve_env(tmp_path, settings,
                    TANDEM_NOTIFY_EMAIL_TO="quality@clinic.test",
                    TANDEM_NOTIFY_EMAIL_FROM="tandem@clinic.test",
                    TANDEM_NOTIFY_SMTP_HOST="127.0.0.1",
                    TANDEM_NOTIFY_SMTP_PORT=str(inbox.smtp_port),
                    TANDEM_NOTIFY_SMTP_SECURITY="none",
                    TANDEM_MIN_CELL_SIZE="10",  # the default: no test-only shortcut
                    PYTHONPATH=str(REPO_ROOT))

    def tandem(*args: str, ok: tuple[int, ...] = (0,), **extra: str
               ) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "tandem.app.cli", *args],
                              env={**env, **extra}, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode in ok, f"tandem {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc

    # 1. Small generated exports; their contracts installed as generate says.
    gen = tandem("generate", "--out", "gen", "--clinics", "2", "--clients-per-clinic", "12")
    assert "tandem contracts install gen/data_contracts" in gen.stdout + gen.stderr
    tandem("contracts", "install", "gen/data_contracts")

    # 2. The service: its own Prefect server, the deployments and the notifications.
    prefect_port = free_port()
    api = f"http://127.0.0.1:{prefect_port}/api"
    srv = start_serve(settings, env, ["--prefect-port", str(prefect_port),
                                      "--api-port", str(free_port()), "--no-watcher",
                                      "--no-api"], api)
    try:
        wait_serving(srv, 240)
        env["PREFECT_API_URL"] = api  # the newcomer's second terminal: `export ...`

        # 3. Ingest the folder (a planted fault fails one file: exit code 3), aggregate.
        ingest = tandem("ingest", "gen", ok=(0, 3))
        assert "Recorded in Prefect as flow run" in ingest.stdout
        if ingest.returncode == 3:  # the file that failed is told by e-mail
            inbox.wait_for(lambda m: m.kind == "email" and m.subject.endswith(" failed")
                           and "was not loaded" in " ".join(m.body.split()), timeout=120)
        tandem("aggregate")
        before = northside_sessions(settings)
        assert therapist_row(settings) is None

        # 4. A late file from a therapist not on the roster: every row quarantined, and the
        #    quality team is told by e-mail.
        (tmp_path / LATE_FILE).write_text(late_delivery())
        tandem("ingest", LATE_FILE)
        listed = json.loads(tandem("quarantine", "list", "--reason", "known_therapist",
                                   "--json").stdout)
        assert any(e.get("source_name") == LATE_FILE for e in listed), listed
        [mail] = inbox.wait_for(lambda m: m.kind == "email" and LATE_FILE in m.subject,
                                timeout=120)
        assert mail.subject == f"Tandem: 100.0% of {LATE_FILE} quarantined"
        assert mail.to == ["quality@clinic.test"]
        assert "rows of northside_2026-06_late.csv from clinic northside were quarantined" \
            in " ".join(mail.body.split())

        # 5. The roster fixed in the site's contract, checked; reprocess; aggregate.
        contract = settings.local_contracts_dir / "clinics" / "northside.yaml"
        spec = yaml.safe_load(contract.read_text())
        spec["therapists"].append(NEW_THERAPIST)
        contract.write_text(yaml.safe_dump(spec, sort_keys=False))
        tandem("contracts", "check")
        done = json.loads(tandem("reprocess", "--json").stdout)
        late = [r for r in done if r["source_name"] == LATE_FILE]
        assert [(r["status"], r["rows_loaded"]) for r in late] == [("reprocessed", 160)]
        tandem("aggregate")

        # 6. The figures changed: the therapist's sessions are published.
        assert therapist_row(settings) == {"sessions": 20, "n_clients": 10,
                                           "suppressed": False}
        assert northside_sessions(settings) == before + 20
        again = json.loads(tandem("reprocess", "--json").stdout)
        assert all(r["source_name"] != LATE_FILE for r in again)  # resolved once
    finally:
        stop_serve(srv)
    assert srv.proc.poll() is not None
    if (home / "run" / "serve.json").exists():
        children = json.loads((home / "run" / "serve.json").read_text())["children"]
        for pid in children.values():
            assert not _alive(pid), f"child {pid} of tandem serve still running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie waiting for its parent is gone for our purpose.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"
