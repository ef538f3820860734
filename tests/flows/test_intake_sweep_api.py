"""The pieces behind the served pipeline, on a temporary Prefect server: intake, the sweep,
the watcher's stability rule, the endpoint's tokens and path handling, the quality summary."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tandem.app.api import create_app, issue_token, load_tokens, revoke_token, verify_token
from tandem.pipeline import intake
from tests.app.conftest import canonical_file
from tests.conftest import CLINIC_CONTRACT


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_claim_is_exclusive_and_names_are_kept(tandem_home):
    src = tandem_home.inbox_dir / "northside" / "jan_corrected.csv"
    src.parent.mkdir(parents=True)
    src.write_text("x")
    landed = intake.receive_file(tandem_home, "northside", src, "inbox")
    assert not src.exists() and landed.path.name == "jan_corrected.csv"
    [waiting] = intake.pending(tandem_home, "northside")
    assert intake.claim(tandem_home, waiting) is not None
    assert intake.claim(tandem_home, waiting) is None  # a second run gets nothing
    assert intake.pending(tandem_home, "northside") == []


def test_unsafe_names_cannot_leave_intake():
    assert intake.safe_filename("../../etc/passwd") == "passwd"
    assert intake.safe_filename("..\\..\\x.csv") == "x.csv"
    assert intake.safe_filename(".hidden") == "hidden"
    assert intake.safe_filename("") == "batch.csv"
    assert not intake.valid_clinic_id("../northside")
    assert not intake.valid_clinic_id("")


def test_watcher_waits_for_a_stable_size_and_ignores_partial_names(tandem_home):
    from tandem.app.watcher import InboxWatcher

    folder = tandem_home.inbox_dir / "northside"
    folder.mkdir(parents=True)
    (folder / "a.csv.part").write_text("partial")
    (folder / "b.csv").write_text("complete")
    watcher = InboxWatcher(tandem_home, stable_seconds=0.3)
    assert watcher.scan() == []  # first sight: not yet known to be stable
    time.sleep(0.4)
    [landed] = watcher.scan()
    assert landed.source_name == "b.csv" and (folder / "a.csv.part").exists()


def test_tokens_are_per_clinic_and_stored_hashed(tandem_home):
    token = issue_token(tandem_home, "northside")
    stored = (tandem_home.secrets_dir / "api_tokens.json").read_text()
    assert token not in stored
    assert oct(os.stat(tandem_home.secrets_dir / "api_tokens.json").st_mode)[-3:] == "600"
    assert verify_token(tandem_home, "northside", token)
    assert not verify_token(tandem_home, "southbank", token)
    assert not verify_token(tandem_home, "northside", token + "x")
    assert revoke_token(tandem_home, "northside") and "northside" not in load_tokens(tandem_home)
    assert not verify_token(tandem_home, "northside", token)


def test_endpoint_stores_the_body_in_intake_for_its_clinic_only(tandem_home):
    token = issue_token(tandem_home, "northside")
    client = TestClient(create_app(tandem_home))
    auth = {"Authorization": f"Bearer {token}"}
    r = client.post("/v1/clinics/northside/batches", params={"filename": "../../../x.csv"},
                    content=b"a,b\n1,2\n", headers=auth)
    assert r.status_code == 202
    [landed] = intake.pending(tandem_home, "northside")
    assert landed.path.name == "x.csv" and landed.trigger == "api"
    assert landed.path.resolve().is_relative_to(tandem_home.home_dir / "intake")
    assert client.post("/v1/clinics/southbank/batches", content=b"a", headers=auth
                       ).status_code == 401
    assert client.post("/v1/clinics/..%2Fnorthside/batches", content=b"a", headers=auth
                       ).status_code in (401, 404)
    assert client.post("/v1/clinics/northside/batches", content=b"", headers=auth
                       ).status_code == 400


def test_sweep_loads_what_events_missed_and_retries_fixed_contracts(prefect_server,
                                                                    tandem_home):
    from flows.sweep import sweep

    # Missed by the watcher: still in the inbox. Missed event: waiting in intake.
    inbox = tandem_home.inbox_dir / "northside"
    inbox.mkdir(parents=True)
    (inbox / "missed.csv").write_text(canonical_file("northside", range(1, 3)))
    old = time.time() - 60
    os.utime(inbox / "missed.csv", (old, old))
    intake.receive_bytes(tandem_home, "northside", "waiting.csv",
                         canonical_file("northside", range(10, 12)).encode(), "inbox")
    # A clinic without a contract yet: its file fails, then its contract arrives.
    intake.receive_bytes(tandem_home, "eastgate", "east.csv",
                         canonical_file("eastgate", range(1, 3)).encode(), "inbox")
    first = sweep()
    assert first["received_from_inbox"] == 1 and first["ingested"] == 3
    assert first["retried"] == 0
    time.sleep(0.05)
    (tandem_home.local_contracts_dir / "clinics" / "eastgate.yaml").write_text(
        CLINIC_CONTRACT.replace("northside", "eastgate"))
    second = sweep()
    upkeep = second.pop("maintenance")  # the lake's nightly upkeep ran too
    assert {"merged_files", "expired_snapshots", "deleted_files"} <= set(upkeep)
    assert second == {"received_from_inbox": 0, "ingested": 0, "retried": 1,
                      "retried_loaded": 1, "purged_files": 0}
    assert sweep()["retried"] == 0  # fixed once, not re-tried every night
    # the sweep purges raw files past their retention, and audits it
    audit = [json.loads(x) for x in (tandem_home.audit_dir / "retention.jsonl")
             .read_text().splitlines()]
    assert [a["trigger"] for a in audit if a["action"] == "purge_received"] == ["sweep"] * 3


def test_quality_summary_reads_the_published_audit(prefect_server, tandem_home):
    from flows.aggregate import aggregate
    from flows.ingest import ingest
    from flows.quality_summary import quality_summary

    path = tandem_home.home_dir / "q.csv"
    path.write_text(canonical_file("northside", range(1, 4)))
    ingest([str(path)], "northside")
    aggregate()
    out = quality_summary()
    text = Path(out["report"]).read_text(encoding="utf-8")
    assert "northside" in text and "C0000" not in text  # no client ids in the report
