"""Bad rows are quarantined with a readable reason; the rest of their file loads."""

from __future__ import annotations

from pathlib import Path

from tandem.core import warehouse
from tests.conftest import HEADER, canonical_rows


def test_ors_item_of_11_is_quarantined_and_the_rest_loads(prefect_server, tandem_home, tmp_path):
    from flows.ingest import ingest

    text = HEADER
    text += canonical_rows("A", "T01", "2026-01-05", 1, "ORS", [4, 5, 11, 6])  # line 4: 11
    text += canonical_rows("A", "T01", "2026-01-05", 1, "SRS", [9, 9, 9, 9])
    path = tmp_path / "northside.csv"
    path.write_text(text)

    [batch] = ingest([str(path)])

    assert batch["status"] == "loaded"
    assert (batch["rows_received"], batch["rows_loaded"], batch["rows_quarantined"]) == (8, 7, 1)
    con = warehouse.connect(tandem_home, read_only=True)
    [(row, rule, reason, raw)] = con.execute(
        "SELECT source_row, rule, reason, raw_values FROM quarantine"
    ).fetchall()
    assert row == 4
    assert rule == "score_in_item_range[ORS]"
    assert reason == "ORS item 3 score 11 is outside the item range 0-10"
    assert '"score":"11"' in raw and '"client_id"' not in raw  # raw values, pseudonymised
    assert con.execute("SELECT count(*) FROM response").fetchone()[0] == 7
    assert (
        con.execute(
            "SELECT count(*) FROM response WHERE instrument = 'ORS' AND item = 3"
        ).fetchone()[0]
        == 0
    )


def test_unreadable_file_is_recorded_as_failed_and_kept(prefect_server, tandem_home, tmp_path):
    from flows.ingest import ingest

    path = tmp_path / "drifted.csv"
    path.write_text(
        "clinic_id,client,therapist_id,session_date,session_number,instrument,item,score\n"
        "northside,A,T01,2026-01-05,1,ORS,1,4\n"
    )
    [batch] = ingest([str(path)], clinic_id="northside")
    assert batch["status"] == "failed"
    assert "missing ['client_id']" in batch["reason"]
    con = warehouse.connect(tandem_home, read_only=True)
    stored, status = con.execute("SELECT stored_path, status FROM batch").fetchone()
    assert status == "failed"
    assert Path(stored).read_bytes() == path.read_bytes()  # kept for a re-run
    assert con.execute("SELECT count(*) FROM response").fetchone()[0] == 0
