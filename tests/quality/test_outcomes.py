"""One file's outcome cut from a run over many files."""

from __future__ import annotations

import polars as pl

from tandem.quality.outcomes import file_outcome, file_report
from tandem.quality.rules import RuleSpec
from transforms.staging import ROW_ID

SPECS = [
    RuleSpec("known_therapist", "expect_column_values_to_be_in_set", {"column": "on_roster"},
             "therapist '{therapist_id}' is not on the clinic's roster", "therapist_id"),
    RuleSpec("score_in_item_range#2", "expect_column_values_to_be_between",
             {"column": "score_num"}, "score {score} out of range", "score",
             label="score_in_item_range[{instrument}]"),
]
REPORT = {"success": False, "statistics": {}, "results": [
    {"success": False, "expectation_config": {"meta": {"rule": s.rule}},
     "result": {"element_count": 99, "unexpected_count": 5}} for s in SPECS]}


def _report(counts, n):
    return file_report(REPORT, counts, n)


def test_counts_and_report_are_the_files_own():
    staged = pl.DataFrame({ROW_ID: [10, 11, 12], "therapist_id": ["T01", "T09", "T09"],
                           "score": ["5", "11", "3"], "instrument": ["ORS"] * 3})
    hits = pl.DataFrame({ROW_ID: [11, 12, 11], "_rule": ["known_therapist", "known_therapist",
                                                          "score_in_item_range#2"]})
    out = file_outcome(hits, SPECS, staged, _report)
    assert [(s["rule"], s["element_count"], s["unexpected_count"]) for s in out.summary] == [
        ("known_therapist", 3, 2), ("score_in_item_range", 3, 1)]
    assert not out.success
    assert sorted(out.failures["rule"].to_list()) == [
        "known_therapist", "known_therapist", "score_in_item_range[ORS]"]
    counts = [r["result"]["unexpected_count"] for r in out.result_json["results"]]
    assert counts == [2, 1]  # the shared run's 5 and 5 became this file's own
    assert out.result_json["statistics"]["unsuccessful_expectations"] == 2


def test_a_clean_file_succeeds():
    staged = pl.DataFrame({ROW_ID: [1], "therapist_id": ["T01"], "score": ["5"],
                           "instrument": ["ORS"]})
    out = file_outcome(pl.DataFrame(schema={ROW_ID: pl.Int64, "_rule": pl.String}), SPECS,
                       staged, _report)
    assert out.success and out.failures.is_empty()
    assert all(r["success"] for r in out.result_json["results"])
