"""The walking skeleton: canonical CSV -> ingest -> aggregate -> published marts.

Runs the real Prefect flows against a temporary Prefect server and a real DuckDB file,
and checks the numbers against a case computed by hand.
"""

from __future__ import annotations

import pytest

from tandem.core import published, warehouse
from tests.conftest import HEADER, canonical_rows


@pytest.fixture
def two_clients_csv(tandem_home, tmp_path):
    # Client A with T01: ORS 20 -> 24 -> 28 (change +8); SRS 36 then 32 (T01 mean 34).
    # Client B with T02: ORS 12 -> 16 (change +4); SRS 38 then 36 (T02 mean 37).
    text = HEADER
    text += canonical_rows("A", "T01", "2026-01-05", 1, "ORS", [4, 5, 5, 6])
    text += canonical_rows("A", "T01", "2026-01-05", 1, "SRS", [9, 9, 9, 9])
    text += canonical_rows("A", "T01", "2026-01-12", 2, "ORS", [5, 6, 6, 7])
    text += canonical_rows("A", "T01", "2026-01-12", 2, "SRS", [8, 8, 8, 8])
    text += canonical_rows("A", "T01", "2026-01-19", 3, "ORS", [6, 7, 7, 8])
    text += canonical_rows("B", "T02", "2026-01-06", 1, "ORS", [3, 3, 3, 3])
    text += canonical_rows("B", "T02", "2026-01-06", 1, "SRS", [10, 10, 9, 9])
    text += canonical_rows("B", "T02", "2026-01-13", 2, "ORS", [4, 4, 4, 4])
    text += canonical_rows("B", "T02", "2026-01-13", 2, "SRS", [9, 9, 9, 9])
    path = tmp_path / "northside-2026-01.csv"
    path.write_text(text)
    return path


def test_ingest_then_aggregate_publishes_hand_computed_numbers(
    prefect_server, tandem_home, two_clients_csv, monkeypatch
):
    monkeypatch.setenv("TANDEM_MIN_CELL_SIZE", "1")  # two clients: no suppression here
    from flows.aggregate import aggregate
    from flows.ingest import ingest

    [batch] = ingest([str(two_clients_csv)])
    assert batch["status"] == "loaded"
    assert batch["rows_received"] == 36
    assert batch["rows_loaded"] == 36
    assert batch["rows_quarantined"] == batch["rows_duplicate"] == 0

    info = aggregate(as_of="2026-02-01")
    snap = published.current(tandem_home)
    assert snap is not None and snap.version == info["version"]
    con = published.open_snapshot(snap)

    ors = con.execute(
        "SELECT therapist_id, first_score, last_score, change, sessions FROM episode_measure "
        "WHERE instrument = 'ORS' ORDER BY therapist_id"
    ).fetchall()
    assert ors == [("T01", 20.0, 28.0, 8.0, 3), ("T02", 12.0, 16.0, 4.0, 2)]

    srs = con.execute(
        "SELECT therapist_id, mean_total, n_sessions FROM dir_therapist_alliance "
        "ORDER BY therapist_id"
    ).fetchall()
    assert srs == [("T01", 34.0, 2), ("T02", 37.0, 2)]

    batches = con.execute("SELECT batch_id, status, rows_loaded FROM audit_batch").fetchall()
    assert batches == [(batch["batch_id"], "loaded", 36)]


def test_the_same_file_twice_changes_nothing(prefect_server, tandem_home, two_clients_csv):
    from flows.ingest import ingest

    first, second = ingest([str(two_clients_csv), str(two_clients_csv)])
    assert first["status"] == "loaded"
    assert second["status"] == "duplicate_file"
    assert second["rows_duplicate"] == second["rows_received"] == 36
    con = warehouse.connect(tandem_home, read_only=True)
    assert con.execute("SELECT count(*) FROM response").fetchone()[0] == 36
