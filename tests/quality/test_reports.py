"""The quality team's report of a batch: its GX result kept as JSON and a readable page."""

from __future__ import annotations

import json

from tandem.quality.reports import build_report_index, write_batch_report

RESULT = {"success": False, "results": [
    {"success": False, "expectation_config": {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "score_num", "min_value": 0, "batch_id": "x"},
        "meta": {"rule": "score_in_item_range"}},
     "result": {"element_count": 8, "unexpected_count": 1}}]}
SUMMARY = {"batch_id": 7, "clinic_id": "northside", "source_name": "<b>jan</b>.csv",
           "rows_received": 8, "rows_loaded": 4, "rows_quarantined": 4, "rows_duplicate": 0}


def test_batch_report_keeps_the_result_and_escapes_names(tmp_path):
    page = write_batch_report(tmp_path, 7, "northside", "<b>jan</b>.csv", RESULT, SUMMARY)
    html = page.read_text()
    assert "&lt;b&gt;jan&lt;/b&gt;.csv" in html and "<b>jan</b>" not in html
    assert "score_in_item_range" in html and ">failed<" in html
    kept = json.loads((tmp_path / "batch-00000007.json").read_text())
    assert kept["validation"] == RESULT and kept["batch"]["rows_quarantined"] == 4


def test_index_lists_batches_newest_first(tmp_path):
    for batch in (3, 11, 7):
        write_batch_report(tmp_path, batch, "northside", f"f{batch}.csv", RESULT,
                           {**SUMMARY, "batch_id": batch, "source_name": f"f{batch}.csv"})
    html = build_report_index(tmp_path).read_text()
    assert html.index("f11.csv") < html.index("f7.csv") < html.index("f3.csv")
