"""End to end on a real Prefect server: files in, marts out, with no flow called directly.

The module starts ``tandem serve`` once (see conftest); the tests run in file order and
the last one checks that it stops cleanly.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import httpx
import pytest

from tandem.app.api import issue_token
from tandem.core import published
from tests.app.conftest import Served, canonical_file, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]


def _loaded(served: Served, names: set[str]) -> bool:
    got = {b["source_name"] for b in served.batches() if b["status"] == "loaded"}
    return names <= got


def test_files_in_two_inboxes_and_a_posted_batch_reach_the_marts(served: Served):
    served.drop("northside", "north-jan.csv", canonical_file("northside", range(1, 9)))
    served.drop("southbank", "south-jan.csv", canonical_file("southbank", range(1, 7)))

    # A clinic that pushes: its own token works for it, and for no other clinic.
    token = issue_token(served.settings, "southbank")
    body = canonical_file("southbank", range(100, 104), start_day=12).encode()
    url = f"{served.endpoint}/v1/clinics/southbank/batches"
    r = httpx.post(url, params={"filename": "../../pushed.csv"}, content=body,
                   headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 202, r.text
    assert r.json()["file"] == "pushed.csv" and r.json()["event_emitted"] is True
    wrong = httpx.post(f"{served.endpoint}/v1/clinics/northside/batches", content=body,
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert wrong.status_code == 401
    anonymous = httpx.post(url, content=body, timeout=10)
    assert anonymous.status_code == 401

    names = {"north-jan.csv", "south-jan.csv", "pushed.csv"}
    wait_for(lambda: _loaded(served, names), 150, "the three files in the marts", served)
    batches = {b["source_name"]: b for b in served.batches()}
    assert batches["north-jan.csv"]["trigger"] == "inbox"
    assert batches["pushed.csv"]["trigger"] == "api"
    assert batches["north-jan.csv"]["rows_loaded"] == 8 * 2 * 4

    # The marts themselves have both clinics' new data.
    def both_clinics() -> bool:
        snap, con = published.open_current(served.settings)
        try:
            rows = dict(con.execute("SELECT clinic_id, count(DISTINCT client_key) "
                                    "FROM episode_measure GROUP BY 1").fetchall())
        finally:
            con.close()
        return rows.get("northside") == 8 and rows.get("southbank") == 10

    wait_for(both_clinics, 60, "both clinics in episode_measure", served)

    # Files left the inbox (so the sweep will not re-ingest them) and were kept by name.
    assert not [p for p in served.settings.inbox_dir.rglob("*") if p.is_file()]
    done = {p.name for p in (served.home / "intake" / "done").rglob("*.csv")}
    assert names <= done
    # Runs are in Prefect, with their parameters (clinic, trigger; no client ids).
    ingests = served.flow_runs("ingest")
    assert {fr["parameters"]["trigger"] for fr in ingests} >= {"inbox", "api"}
    assert served.flow_runs("aggregate")
    # The schedules work too: the nightly sweep and daily summary have runs lined up.
    for name in ("sweep", "quality-summary"):
        wait_for(lambda name=name: any(fr["state_type"] == "SCHEDULED"
                                       for fr in served.flow_runs(name)),
                 90, f"a scheduled {name} run", served)


def test_fifty_files_at_once_load_exactly_once_and_aggregate_a_few_times(served: Served):
    start = time.time()
    before = len(served.batches())
    names = set()
    for i in range(50):
        clinic = "northside" if i % 2 else "southbank"
        name = f"burst-{i:02d}.csv"
        names.add(name)
        # Unique clients per file, so every file loads rows of its own.
        served.drop(clinic, name, canonical_file(clinic, range(1000 + 10 * i, 1005 + 10 * i)))

    wait_for(lambda: _loaded(served, names), 330, "all 50 files in the marts", served, every=1)
    # Let the coalescing runs finish their windows, then count.
    def settled() -> bool:
        runs = served.flow_runs("aggregate-on-batches") + served.flow_runs("ingest-received")
        return all(fr["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                   for fr in runs)

    wait_for(settled, 150, "the event-driven runs to finish", served, every=1)
    elapsed = time.time() - start

    batches = served.batches()[before:]
    per_name = Counter(b["source_name"] for b in batches if b["source_name"] in names)
    assert set(per_name) == names
    assert all(n == 1 for n in per_name.values()), per_name  # each file loaded exactly once
    assert all(b["status"] == "loaded" for b in batches if b["source_name"] in names)

    aggregates = served.flow_runs("aggregate", since=start)
    coalescers = served.flow_runs("aggregate-on-batches", since=start)
    ingest_runs = served.flow_runs("ingest-received", since=start)
    print(f"50 files: {len(ingest_runs)} ingest-received runs, {len(coalescers)} "
          f"aggregate-on-batches runs, {len(aggregates)} aggregate runs, {elapsed:.0f} s")
    assert 1 <= len(aggregates) <= 5
    # One coalescing run per trigger window (40 s here), however many files.
    assert len(coalescers) <= elapsed / 40 + 2
    assert len(ingest_runs) <= 4  # one per clinic (per 5 s window), not one per file
    assert all(fr["state_type"] == "COMPLETED" for fr in aggregates + coalescers)
    # The published marts include the last batch of the burst.
    assert served.batches()[-1]["batch_id"] == max(b["batch_id"] for b in batches)


def test_serve_stops_cleanly_on_sigterm(served: Served):
    os.killpg(served.proc.pid, signal.SIGTERM)
    assert served.proc.wait(90) == 0
    time.sleep(0.5)
    assert any("stopped" in line for line in served.output)
    assert not (served.home / "run" / "serve.json").exists()
    try:
        httpx.get(f"{served.prefect_api}/health", timeout=2)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("the Prefect server still answers after serve stopped")
