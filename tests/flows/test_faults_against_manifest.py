"""On generated data with injected faults, ingest does exactly what the manifest expects.

Quarantine catches every row-level fault marked ``quarantine`` and nothing else (precision
and recall of 100%, matched on file and row); file-level faults end as ``failed`` with a
reason; duplicates and corrected re-sends are recognised; accounting holds for every batch.
Runs the real ``ingest`` flow on a temporary Prefect server.
"""

from __future__ import annotations

import pytest

from tandem.core import warehouse
from tests.synth_support import (
    expected_refs,
    generate_small,
    install_contracts,
    pick_files,
    quarantined_refs,
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return out, generate_small(out, seed=16)


def test_quarantine_matches_the_manifest_exactly(prefect_server, tandem_home, generated):
    from flows.ingest import ingest

    gen, manifest = generated
    install_contracts(gen, tandem_home)
    files = pick_files(gen, manifest, per_clinic=2)
    results = []
    for clinic in sorted({p.parent.name for p in files}):
        paths = [str(p) for p in files if p.parent.name == clinic]
        results += ingest(paths, clinic_id=clinic, as_of=manifest["as_of"])
    by_file = {f"{r['clinic_id']}/{r['source_name']}": r for r in results}

    # Row level: precision and recall of 100% against the manifest.
    got = quarantined_refs(tandem_home)
    expected = expected_refs(manifest, files)
    assert expected, "the generated sample should contain row faults"
    false_positives, missed = got - expected, expected - got
    assert not false_positives, f"quarantined, no fault: {sorted(false_positives)[:10]}"
    assert not missed, f"injected faults not caught: {sorted(missed)[:10]}"

    # File level: failed with a reason, or recognised as a duplicate / a replacement.
    names = set(by_file)
    outcome_status = {"file_failed": {"failed"}, "file_duplicate": {"duplicate_file"},
                      "file_replaced": {"loaded"}}
    checked = 0
    for fault in manifest["faults"]:
        if fault["file"] in names and fault["expected_outcome"] in outcome_status:
            batch = by_file[fault["file"]]
            assert batch["status"] in outcome_status[fault["expected_outcome"]], (fault, batch)
            if batch["status"] == "failed":
                assert batch["reason"] and len(batch["reason"]) > 20
            if fault["kind"] == "corrected_file":
                assert batch["reason"].startswith("replaces batch ")
            checked += 1
    assert checked >= 3
    failed_files = {f for f, r in by_file.items() if r["status"] == "failed"}
    assert failed_files == {f["file"] for f in manifest["faults"]
                            if f["expected_outcome"] == "file_failed" and f["file"] in names}

    # Accounting, per batch, as returned and as recorded.
    for r in results:
        assert r["rows_received"] == r["rows_loaded"] + r["rows_quarantined"] + r["rows_duplicate"]
    con = warehouse.connect(tandem_home, read_only=True)
    bad = con.execute(
        "SELECT batch_id FROM batch WHERE rows_received "
        "<> rows_loaded + rows_quarantined + rows_duplicate").fetchall()
    assert bad == []
    # ... and the recorded counts agree with the rows the tables hold.
    mismatch = con.execute(
        """
        SELECT b.batch_id FROM batch b
        LEFT JOIN (SELECT batch_id, count(*) n FROM response GROUP BY ALL) r USING (batch_id)
        LEFT JOIN (SELECT batch_id, count(*) n FROM reported_total GROUP BY ALL) t
          USING (batch_id)
        LEFT JOIN (SELECT batch_id, sum(n) n FROM (SELECT DISTINCT batch_id, source_ref,
                   instrument, rows_set_aside n FROM quarantine) GROUP BY ALL) q
          USING (batch_id)
        WHERE b.status = 'loaded' AND (coalesce(r.n, 0) + coalesce(t.n, 0) <> b.rows_loaded
              OR coalesce(q.n, 0) <> b.rows_quarantined)
        """).fetchall()
    assert mismatch == []
    # Every failing record says why, readably, and every batch has a report page.
    short = con.execute("SELECT count(*) FROM quarantine WHERE length(reason) < 10").fetchone()
    assert short[0] == 0
    loaded = con.execute("SELECT batch_id FROM batch WHERE status = 'loaded'").fetchall()
    for (bid,) in loaded:
        assert (tandem_home.validation_dir / f"batch-{bid:08d}.html").exists()
