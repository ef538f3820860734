"""What quality teams read per batch agrees with what was set aside.

The per-rule counts of ``validation_result`` (Great Expectations' unexpected counts, shown on
the dashboard's validation page and in every batch report) must equal the quarantine rows
filed under that rule, batch by batch, on a generated data set with every kind of row fault.
"""

from __future__ import annotations

import json
from collections import Counter

from tandem.core import warehouse
from tandem.pipeline.ingest import IngestRun, process_files
from tests.synth_support import as_of, generate_small, install_contracts


def _base(rule: str) -> str:
    return rule.split("[", 1)[0]


def test_validation_counts_equal_quarantine_rows_per_batch_and_rule(tandem_home, tmp_path):
    gen = tmp_path / "gen"
    manifest = generate_small(gen, seed=23, row_scale=10.0)
    install_contracts(gen, tandem_home)
    files = sorted((gen / "files").rglob("*.*"))
    results = process_files(files, IngestRun.load(tandem_home, as_of=as_of(manifest)))
    loaded = {r.batch_id for r in results if r.status == "loaded"}
    assert loaded and sum(r.rows_quarantined for r in results) > 0

    con = warehouse.connect(tandem_home, read_only=True)
    try:
        gx = con.execute("SELECT batch_id, rule, unexpected_count FROM validation_result"
                         ).fetchall()
        quarantined = con.execute("SELECT batch_id, rule FROM quarantine").fetchall()
        refs = con.execute("SELECT DISTINCT batch_id, rule, source_ref FROM quarantine"
                           ).fetchall()
    finally:
        con.close()
    reported: Counter = Counter()
    for batch, rule, count in gx:
        reported[(batch, _base(rule))] += count
    filed = Counter((batch, _base(rule)) for batch, rule in quarantined
                    if rule != "consistent_with_loaded_rows")  # checked against the warehouse
    assert +reported == filed
    assert {b for b, _ in filed} <= loaded and len(filed) > 5
    # and each batch's kept GX report says the same: counts, and its examples (the rows GX
    # listed, by source_ref) are rows quarantined under that rule
    quarantined_refs = {(b, _base(r), ref) for b, r, ref in refs}
    examples = 0
    for batch in loaded:
        doc = json.loads((tandem_home.validation_dir / f"batch-{batch:08d}.json").read_text())
        in_report: Counter = Counter()
        for res in doc["validation"]["results"]:
            rule = _base(res["expectation_config"]["meta"]["rule"].split("#")[0])
            count = res["result"]["unexpected_count"]
            in_report[rule] += count
            shown = res["result"]["partial_unexpected_index_list"]
            assert len(shown) == min(count, 20)
            assert {(batch, rule, e["source_ref"]) for e in shown} <= quarantined_refs
            examples += len(shown)
        assert +in_report == Counter({r: n for (b, r), n in filed.items() if b == batch})
    assert examples > 5
