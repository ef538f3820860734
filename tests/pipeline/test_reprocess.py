"""``reprocess``: quarantined rows validated again after a roster change, exactly once, with
their own batch record and lineage; never an answer loaded twice."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tandem.core import warehouse
from tandem.core.settings import Settings
from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT, canonical_rows

AS_OF = dt.date(2026, 6, 30)


def _ingest(settings: Settings, *paths: Path) -> list:
    from tandem.pipeline.ingest import IngestRun, process_files

    return process_files(list(paths), IngestRun.load(settings, as_of=AS_OF))


def _reprocess(settings: Settings, **scope):
    from tandem.pipeline.reprocess import Scope, reprocess

    return reprocess(settings, Scope(**scope), as_of=AS_OF)


def _add_therapist(settings: Settings, therapist: str) -> None:
    path = settings.local_contracts_dir / "clinics" / "northside.yaml"
    path.write_text(CLINIC_CONTRACT.replace("[T01, T02]", f"[T01, T02, {therapist}]"))


def _late_therapist_file(folder: Path, name: str = "late.csv") -> Path:
    """Two clients of a therapist not yet on the roster (T09), one of T01; and one row
    with a score out of range for T09, which no roster change can fix."""
    text = HEADER
    text += canonical_rows("A", "T01", "2026-01-05", 1, "ORS", [5, 6, 7, 8])
    text += canonical_rows("B", "T09", "2026-01-06", 1, "ORS", [4, 4, 4, 4])
    text += canonical_rows("C", "T09", "2026-01-07", 1, "SRS", [9, 9, 9, 9])
    text += "northside,C,T09,2026-01-07,1,ORS,1,42\n"
    path = folder / name
    path.write_text(text)
    return path


def _count(settings: Settings, sql: str, params: list | None = None) -> int:
    with warehouse.reader(settings) as con:
        return int(con.execute(sql, params or []).fetchone()[0])


def test_a_therapist_added_late_loads_once_with_its_own_batch(tandem_home, tmp_path):
    [first] = _ingest(tandem_home, _late_therapist_file(tmp_path))
    assert (first.rows_loaded, first.rows_quarantined) == (4, 9)
    # Delivering the same bytes again changes nothing: the old dead end.
    [again] = _ingest(tandem_home, _late_therapist_file(tmp_path, "late_copy.csv"))
    assert again.status == "duplicate_file"

    # Before the roster changes, a reprocess finds nothing new: no batch at all.
    assert [r.status for r in _reprocess(tandem_home)] == ["unchanged"]
    assert _count(tandem_home, "SELECT count(*) FROM batch") == 2

    _add_therapist(tandem_home, "T09")
    [done] = _reprocess(tandem_home)
    assert done.status == "reprocessed" and done.of_batch_id == first.batch_id
    assert (done.rows_received, done.rows_loaded, done.rows_quarantined,
            done.rows_duplicate) == (9, 8, 1, 0)
    assert (done.loaded, done.requarantined, done.unchanged) == (8, 1, 0)

    with warehouse.reader(tandem_home) as con:
        record = con.execute(
            "SELECT trigger, status, source_name, content_sha256, rows_loaded, rows_quarantined "
            "FROM batch WHERE batch_id = ?", [done.batch_id]).fetchone()
        original = con.execute("SELECT source_name, content_sha256 FROM batch "
                               "WHERE batch_id = ?", [first.batch_id]).fetchone()
        assert record[:2] == ("reprocess", "loaded") and record[2:4] == original
        assert record[4:] == (8, 1)
        # lineage: the loaded rows name the reprocess batch and their place in the file
        refs = sorted(int(r[0]) for r in con.execute(
            "SELECT source_ref FROM response WHERE batch_id = ?", [done.batch_id]).fetchall())
        assert refs == list(range(6, 14))
        assert con.execute("SELECT count(*) FROM response WHERE therapist_id = 'T09'"
                           ).fetchone()[0] == 8
        # the row that still fails is quarantined again, under the new batch, with the
        # current reason only (the roster no longer complains)
        [(rule, batch)] = con.execute(
            "SELECT rule, batch_id FROM quarantine WHERE batch_id = ?", [done.batch_id]
        ).fetchall()
        assert (rule, batch) == ("score_in_item_range[ORS]", done.batch_id)
        outcomes = dict(con.execute(
            "SELECT outcome, count(*) FROM quarantine_resolution WHERE batch_id = ? GROUP BY 1",
            [first.batch_id]).fetchall())
        assert outcomes == {"loaded": 8, "requarantined": 1}
    assert Path(tandem_home.validation_dir / f"batch-{done.batch_id:08d}.json").exists()

    # Exactly once: a second reprocess does nothing, and loads nothing twice.
    again = _reprocess(tandem_home)
    assert [r.status for r in again] == ["unchanged"]
    assert again[0].of_batch_id == done.batch_id  # the row re-quarantined, still failing
    assert _count(tandem_home, "SELECT count(*) FROM batch") == 3
    assert _count(tandem_home, "SELECT count(*) FROM response") == 12


def test_an_answer_loaded_meanwhile_is_a_duplicate_not_loaded_twice(tandem_home, tmp_path):
    [first] = _ingest(tandem_home, _late_therapist_file(tmp_path))
    _add_therapist(tandem_home, "T09")
    # the clinic sends the same answers of client B again, in a new file, after the fix
    fixed = tmp_path / "b_again.csv"
    fixed.write_text(HEADER + canonical_rows("B", "T09", "2026-01-06", 1, "ORS", [4, 4, 4, 4]))
    [resent] = _ingest(tandem_home, fixed)
    assert resent.rows_loaded == 4
    [done] = _reprocess(tandem_home)
    assert (done.rows_loaded, done.rows_duplicate, done.rows_quarantined) == (4, 4, 1)
    assert _count(tandem_home, "SELECT count(*) FROM response WHERE client_key IN "
                  "(SELECT client_key FROM response WHERE batch_id = ?)", [resent.batch_id]) == 4
    with warehouse.reader(tandem_home) as con:
        outcomes = dict(con.execute(
            "SELECT outcome, count(*) FROM quarantine_resolution GROUP BY 1").fetchall())
    assert outcomes == {"loaded": 4, "duplicate": 4, "requarantined": 1}
    assert first.batch_id < resent.batch_id < done.batch_id


def test_scope_by_reason_and_batch(tandem_home, tmp_path):
    [first] = _ingest(tandem_home, _late_therapist_file(tmp_path))
    _add_therapist(tandem_home, "T09")
    assert _reprocess(tandem_home, batches=(first.batch_id + 99,)) == []
    [done] = _reprocess(tandem_home, reasons=("score_in_item_range",))
    # only the administration with that reason was looked at: it still fails for it
    # (and no longer for the roster): quarantined again with the current reason alone
    assert (done.administrations, done.requarantined, done.rows_loaded) == (1, 1, 0)
    [rest] = _reprocess(tandem_home, reasons=("known_therapist",), clinics=("northside",))
    assert (rest.of_batch_id, rest.rows_loaded) == (first.batch_id, 8)


def test_a_corrected_resend_replaces_what_the_reprocess_loaded(tandem_home, tmp_path):
    [first] = _ingest(tandem_home, _late_therapist_file(tmp_path))
    _add_therapist(tandem_home, "T09")
    [done] = _reprocess(tandem_home)
    corrected = tmp_path / "late_corrected.csv"
    corrected.write_text(HEADER + canonical_rows("B", "T09", "2026-01-06", 1, "ORS",
                                                 [3, 3, 3, 3]))
    [new] = _ingest(tandem_home, corrected)
    assert new.status == "loaded" and new.rows_loaded == 4 and new.rows_quarantined == 0
    assert new.rows_replaced == 4 + 8
    with warehouse.reader(tandem_home) as con:
        gone = {r[0] for r in con.execute(
            "SELECT batch_id FROM batch WHERE status = 'superseded'").fetchall()}
        assert gone == {first.batch_id, done.batch_id}
        assert con.execute("SELECT count(*) FROM response").fetchone()[0] == 4
    # nothing open is left of the replaced batches
    assert _reprocess(tandem_home) == []


_CHILD = """
import json, sys
from tandem.core.settings import get_settings
from tandem.pipeline.reprocess import reprocess
import datetime as dt
print("RESULT " + json.dumps([r.summary() for r in reprocess(get_settings(),
                              as_of=dt.date(2026, 6, 30))]), flush=True)
"""


@pytest.mark.timeout(600)
def test_two_concurrent_reprocess_runs_load_once(tandem_home, tmp_path):
    _ingest(tandem_home, _late_therapist_file(tmp_path))
    _add_therapist(tandem_home, "T09")
    env = {**os.environ, "TANDEM_HOME": str(tandem_home.home_dir),
           "TANDEM_PSEUDONYM_KEY": "test-only-key", "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [json.loads(line[7:]) for out, _ in outs for line in out.splitlines()
               if line.startswith("RESULT ")]
    made = [r for rs in results for r in rs if r["status"] == "reprocessed"]
    assert len(made) == 1 and made[0]["rows_loaded"] == 8
    assert _count(tandem_home, "SELECT count(*) FROM batch WHERE trigger = 'reprocess'") == 1
    assert _count(tandem_home, "SELECT count(*) FROM response") == 12
    assert _count(tandem_home, "SELECT count(*) FROM quarantine_resolution") == 9
