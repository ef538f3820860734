"""Notifications end to end: real Prefect server, real SMTP server (aiosmtpd), real HTTP
receiver. The automations are made by flows.notify.sync_automations from the settings; the
events come from the real code paths (the ``tandem`` command recording its runs, the
quality-summary flow, the inbox watcher); what arrived is read back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT, canonical_rows
from tests.flows.servers import Inbox, prefect_server

pytestmark = pytest.mark.slow

SOUTHBANK = CLINIC_CONTRACT.replace("northside", "southbank").replace("Northside", "Southbank")


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        yield url


@pytest.fixture(scope="module")
def site(tmp_path_factory, server: str, inbox: Inbox) -> dict[str, str]:
    """A TANDEM_HOME with two clinics (southbank never sends) and notifications to the
    inbox; the automations made once for the module. Returns the environment."""
    home = tmp_path_factory.mktemp("site") / "home"
    clinics = home / "data_contracts" / "clinics"
    clinics.mkdir(parents=True)
    (clinics / "northside.yaml").write_text(CLINIC_CONTRACT)
    (clinics / "southbank.yaml").write_text(SOUTHBANK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_"))}
    env.update(TANDEM_HOME=str(home), TANDEM_PSEUDONYM_KEY="test-only-key",
               TANDEM_MIN_CELL_SIZE="1", PREFECT_API_URL=server,
               PREFECT_HOME=str(home / "prefect"), PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", GX_ANALYTICS_ENABLED="false",
               PYTHONPATH=str(REPO_ROOT),
               TANDEM_NOTIFY_EMAIL_TO="ops@clinic.test, quality@clinic.test",
               TANDEM_NOTIFY_EMAIL_FROM="tandem@clinic.test",
               TANDEM_NOTIFY_SMTP_HOST="127.0.0.1",
               TANDEM_NOTIFY_SMTP_PORT=str(inbox.smtp_port),
               TANDEM_NOTIFY_SMTP_SECURITY="none",
               TANDEM_NOTIFY_WEBHOOK_URL=inbox.webhook_url)
    assert python(env, "from flows.notify import sync_automations\n"
                       "from tandem.core.settings import get_settings\n"
                       "print(sync_automations(get_settings()))").strip() == "5"
    return env


def python(env: dict[str, str], code: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def tandem(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tandem.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


def automations(api: str) -> dict[str, dict]:
    r = httpx.post(f"{api}/automations/filter", json={}, timeout=10)
    return {a["name"]: a for a in r.json() if a["name"].startswith("tandem-notify: ")}


def test_one_automation_per_rule_sends_to_every_destination(site, server):
    from flows.notify import RULES

    # Run again: the automations are replaced, not added to.
    python(site, "from flows.notify import sync_automations\n"
                 "from tandem.core.settings import get_settings\n"
                 "sync_automations(get_settings())")
    found = automations(server)
    assert sorted(found) == sorted(f"tandem-notify: {r.name}" for r in RULES)
    for automation in found.values():
        assert len(automation["actions"]) == 2
        assert {a["type"] for a in automation["actions"]} == {"send-notification"}
    # The webhook's URL is one of its block's secrets, not shown by the API.
    r = httpx.post(f"{server}/block_documents/filter", json={}, timeout=10)
    docs = {d["name"]: d for d in r.json()}
    assert {"tandem-email", "tandem-webhook"} <= set(docs)
    assert "tandem-secret" not in json.dumps(docs["tandem-webhook"]["data"])

    # Without a webhook the automations send e-mail only, and the webhook block goes.
    no_hook = {k: v for k, v in site.items() if k != "TANDEM_NOTIFY_WEBHOOK_URL"}
    python(no_hook, "from flows.notify import sync_automations\n"
                    "from tandem.core.settings import get_settings\n"
                    "sync_automations(get_settings())")
    assert all(len(a["actions"]) == 1 for a in automations(server).values())
    r = httpx.post(f"{server}/block_documents/filter", json={}, timeout=10)
    assert "tandem-webhook" not in {d["name"] for d in r.json()}
    python(site, "from flows.notify import sync_automations\n"
                 "from tandem.core.settings import get_settings\n"
                 "sync_automations(get_settings())")
    assert all(len(a["actions"]) == 2 for a in automations(server).values())


def test_a_failed_file_is_told_by_email_and_webhook(site, inbox, tmp_path):
    bad = tmp_path / "northside_2026-02.csv"
    bad.write_text("clinic_id,client_id,when\nnorthside,C1,2026-01-05\n")
    proc = tandem(site, "ingest", str(bad))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Recorded in Prefect as flow run" in proc.stdout

    def about(m):
        return "northside_2026-02.csv" in m.subject

    mails = inbox.wait_for(lambda m: m.kind == "email" and about(m), count=2)
    assert sorted(to for m in mails for to in m.to) == ["ops@clinic.test",
                                                         "quality@clinic.test"]
    (hook,) = inbox.wait_for(lambda m: m.kind == "http" and about(m))
    for message in (mails[0], hook):
        assert message.subject == "Tandem: northside_2026-02.csv from northside failed"
        assert "The file northside_2026-02.csv from clinic northside failed and was not " \
               "loaded: " in " ".join(message.body.split())
        assert "does not match the canonical CSV header" in message.body
    assert hook.path.endswith("/tandem-secret")


def test_a_quarantine_rate_above_the_clinics_usual_is_told(site, inbox, tmp_path):
    rows = "".join(canonical_rows(f"Q{c}", "T01", "2026-02-02", 1, "ORS",
                                  [5, 6, 7, 8] if c % 2 else [55, 66, 77, 88])
                   for c in range(10))
    path = tmp_path / "northside_2026-03.csv"
    path.write_text(HEADER + rows)
    proc = tandem(site, "ingest", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (mail,) = inbox.wait_for(lambda m: m.kind == "email" and "quarantined" in m.subject
                             and "ops@clinic.test" in m.to)
    assert mail.subject == "Tandem: 50.0% of northside_2026-03.csv quarantined"
    assert "20 of the 40 rows of northside_2026-03.csv from clinic northside were " \
           "quarantined (50.0%), against a usual 0.0% for this clinic." in \
           " ".join(mail.body.split())


def test_the_daily_summary_and_a_silent_clinic_are_told(site, inbox, tmp_path):
    good = tmp_path / "northside_2026-04.csv"
    good.write_text(HEADER + canonical_rows("S1", "T01", "2026-03-02", 1, "ORS", [5, 6, 7, 8]))
    assert tandem(site, "ingest", str(good)).returncode == 0
    proc = tandem(site, "aggregate", "--as-of", "2026-06-30")
    assert proc.returncode == 0, proc.stderr
    out = python(site, """
        import json
        from flows.quality_summary import quality_summary
        print(json.dumps(quality_summary()))
    """)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["silent_clinics"] == ["southbank"]  # northside sent files today
    (summary,) = inbox.wait_for(lambda m: m.kind == "email" and "summary" in m.subject
                                and "ops@clinic.test" in m.to)
    assert summary.subject.startswith("Tandem quality summary: ")
    assert "# Data quality since" in summary.body and "northside" in summary.body
    (silent,) = inbox.wait_for(lambda m: m.kind == "http" and "Southbank" in m.subject)
    assert silent.subject.startswith("Tandem: nothing from Southbank Counselling for ")
    assert "has not sent any file since its contract started" in silent.body


def test_marts_that_lag_behind_new_data_are_told_once(site, inbox, tmp_path):
    late = tmp_path / "northside_2026-05.csv"
    late.write_text(HEADER + canonical_rows("L1", "T01", "2026-04-06", 1, "ORS", [5, 6, 7, 8]))
    assert tandem(site, "ingest", str(late)).returncode == 0  # not published: marts behind
    env = {**site, "TANDEM_NOTIFY_MARTS_LATE_MINUTES": "0.01"}
    out = python(env, """
        import time
        from tandem.app.watcher import InboxWatcher
        from tandem.core.settings import get_settings
        from prefect.events.worker import EventsWorker
        w = InboxWatcher(get_settings(), stable_seconds=0.1)
        first = w.check_marts_late()          # starts the clock
        time.sleep(1.0)
        second = w.check_marts_late()         # 1 s > 0.6 s: told
        third = w.check_marts_late()          # told once
        EventsWorker.drain_all(timeout=10)
        print(first, second, third)
    """)
    assert out.split()[-3:] == ["False", "True", "False"]
    (mail,) = inbox.wait_for(lambda m: m.kind == "email" and "lags" in m.subject
                             and "ops@clinic.test" in m.to)
    assert mail.subject == "Tandem: the dashboard lags behind new data"
    assert "are in the warehouse, but the published marts (what the dashboard shows) stop " \
           "at batch" in " ".join(mail.body.split())


def test_email_urls_for_each_kind_of_smtp_server():
    from flows.notify import email_url
    from tandem.core.settings import Settings

    plain = Settings(notify_email_to="a@x.test", notify_smtp_host="relay.local",
                     notify_smtp_port=25, notify_smtp_security="none")
    assert email_url(plain) == ("mailto://relay.local:25?smtp=relay.local&from=tandem@localhost"
                                "&to=a@x.test&name=Tandem&format=text")
    secure = Settings(notify_email_to="a@x.test,b@x.test", notify_smtp_host="smtp.x.test",
                      notify_smtp_user="ops@x.test", notify_smtp_password="p@ss:w/rd",
                      notify_smtp_security="ssl", notify_smtp_port=465)
    assert email_url(secure) == ("mailtos://ops%40x.test:p%40ss%3Aw%2Frd@smtp.x.test:465"
                                 "?smtp=smtp.x.test&from=tandem@localhost&to=a@x.test,b@x.test"
                                 "&name=Tandem&format=text&mode=ssl")
    assert email_url(Settings()) is None
