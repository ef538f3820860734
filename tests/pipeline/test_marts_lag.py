"""Batch ids are taken before a load commits, so loads of two clinics (or two workers) can
commit out of id order. A publication planned between them holds batch 3 but not batch 2:
everything that asks "are the marts behind?" (the served aggregate's loop, the watcher's
stale check, ``tandem health``, ``tandem status``) must still see batch 2 as missing. They
compared the newest batch id with the publication's newest, and the late batch stayed out
of the marts until another file arrived (seen in CI: round 3 of the Prefect-restart test)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tandem.app import health
from tandem.app.watcher import InboxWatcher
from tandem.core import published, warehouse
from tandem.core.settings import Settings
from tandem.pipeline import status
from tandem.pipeline.aggregate import run_aggregate
from tandem.pipeline.ingest import IngestRun, process_file
from tests.conftest import HEADER, canonical_rows

AS_OF = dt.date(2026, 6, 30)


def _load(settings: Settings, folder: Path, name: str, client: str) -> int:
    path = folder / name
    path.write_text(HEADER + canonical_rows(client, "T01", "2026-01-05", 1, "ORS", [5, 6, 7, 8]))
    result = process_file(path, IngestRun.load(settings, as_of=AS_OF))
    assert result.status == "loaded", result.reason
    return result.batch_id


@pytest.fixture
def late_batch(tandem_home, tmp_path, monkeypatch) -> int:
    """Batch 1 published; batch 2's id taken; batch 3 loaded and published; then batch 2
    commits. Returns 2."""
    settings = tandem_home
    assert _load(settings, tmp_path, "a.csv", "C1") == 1
    run_aggregate(settings, AS_OF)
    with warehouse.writer(settings) as con:  # a load of another clinic starts ...
        (late,) = warehouse.allocate_batch_ids(con, 1)
    assert _load(settings, tmp_path, "b.csv", "C2") == late + 1  # ... another overtakes it
    run_aggregate(settings, AS_OF)
    with monkeypatch.context() as m:  # ... and the first commits only now, with its old id
        m.setattr(warehouse, "allocate_batch_ids", lambda con, n: [late])
        assert _load(settings, tmp_path, "c.csv", "C3") == late
    return late


def test_every_check_sees_the_batch_that_committed_late(tandem_home, late_batch, monkeypatch):
    settings = tandem_home
    lag = published.marts_lag(settings)
    assert (lag.latest, lag.in_marts, lag.missing, lag.behind) == (3, 3, 1, True)

    sent = []
    monkeypatch.setattr("flows.events.emit_marts_stale",
                        lambda latest, in_marts: sent.append((latest, in_marts)) or True)
    assert InboxWatcher(settings, 1.0).check_marts(now=True)  # the watcher's stale event
    assert sent == [(3, 3)]

    marts = {p.name: p for p in health.data_parts(settings)}["published marts"]
    assert marts.state == "behind" and "1 batch(es) are not in it yet" in marts.detail
    assert status.clinic_status(settings)["marts"]["behind"]

    run_aggregate(settings, AS_OF)  # what the stale event starts
    assert not published.marts_lag(settings).behind
    snap = published.current(settings)
    clients = published.query_snapshot(
        snap, "SELECT count(DISTINCT client_key) FROM episode_session", settings=settings)
    assert clients[0][0] == 3

