"""Great Expectations runs the compiled contract: failing rows come back with their rules,
per-file counts are what each file's own run would say, and GX's counts are the failures."""

from __future__ import annotations

from collections import Counter

from tandem.core.settings import Settings
from tandem.quality.contract import validate_many
from tandem.quality.rules import base_rule
from tests.conftest import HEADER, canonical_rows
from tests.quality.conftest import AS_OF, contract, staged


def test_failing_rows_come_back_with_rule_column_and_reason(instruments,
                                                              good_and_bad):
    frame = staged(good_and_bad, contract())
    [outcome] = validate_many([(frame, contract())], instruments, AS_OF,
                                        Settings().rules_path)
    assert not outcome.success
    by_rule = {r["rule"]: r for r in outcome.failures.iter_rows(named=True)}
    assert by_rule["score_in_item_range[ORS]"]["column_name"] == "score"
    assert "11" in by_rule["score_in_item_range[ORS]"]["reason"]
    assert by_rule["known_therapist"]["reason"] == "therapist 'T09' is not on the clinic's roster"
    failing_rows = set(outcome.failures["row_id"].to_list())
    clean = set(frame.filter(frame["client_key"] == "C1")["row_id"].to_list())
    assert failing_rows and not failing_rows & clean


def test_gx_counts_per_rule_are_the_failures_per_rule(instruments, good_and_bad):
    """What quality teams see per batch (validation_result) agrees with what was set aside."""
    [outcome] = validate_many([(staged(good_and_bad, contract()), contract())],
                                        instruments, AS_OF, Settings().rules_path)
    reported = Counter()
    for s in outcome.summary:
        reported[s["rule"].split("[")[0]] += s["unexpected_count"]
    failed = Counter(r.split("[")[0] for r in outcome.failures["rule"].to_list())
    assert +reported == failed and sum(failed.values()) >= 2
    # GX's own result (the report) says the same
    gx = Counter()
    for res in outcome.result_json["results"]:
        rule = base_rule(res["expectation_config"]["meta"]["rule"]).split("[")[0]
        gx[rule] += res["result"]["unexpected_count"]
    assert +gx == failed


def test_many_files_in_one_run_equal_each_file_alone(instruments, good_and_bad):
    other = contract("riverside", ("T09",))
    text2 = (HEADER
             + canonical_rows("C7", "T09", "2025-02-01", 1, "ORS", [1, 2, 3, 4], "riverside")
             + canonical_rows("C8", "T01", "2025-02-01", 1, "ORS", [1, 2, 3, 4], "riverside"))
    a, b = staged(good_and_bad, contract()), staged(text2, other, row_offset=1000)
    together = validate_many([(a, contract()), (b, other)], instruments, AS_OF,
                                       Settings().rules_path)
    alone = [validate_many([(f, c)], instruments, AS_OF, Settings().rules_path)[0]
             for f, c in ((a, contract()), (b, other))]
    for t, s in zip(together, alone, strict=True):
        assert t.summary == s.summary
        assert t.failures.sort("row_id", "rule").equals(s.failures.sort("row_id", "rule"))
    # the roster is each file's own: T09 is unknown at northside, known at riverside
    assert "known_therapist" in together[0].failures["rule"].to_list()
    rows_b = together[1].failures.filter(together[1].failures["rule"] == "known_therapist")
    assert set(rows_b["row_id"].to_list()) == set(
        b.filter(b["therapist_id"] == "T01")["row_id"].to_list())


def test_checking_without_a_report_never_imports_gx(good_and_bad):
    """The quarantine is decided without GX: only asking for the report imports it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tandem.core.contracts import load_instruments\n"
        "from tandem.core.settings import Settings\n"
        "from tandem.quality.contract import check_many\n"
        "from tests.quality.conftest import AS_OF, contract, staged\n"
        f"frame = staged({good_and_bad!r}, contract())\n"
        "[o] = check_many([(frame, contract())], load_instruments(Settings()), AS_OF,\n"
        "                 Settings().rules_path)\n"
        "assert not o.success and o.failures.height\n"
        "print('great_expectations' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "False"


def test_gx_listing_other_rows_than_the_quarantine_is_an_error(instruments, good_and_bad):
    import polars as pl
    import pytest

    from tandem.quality.compiled_rules import evaluate, rule_columns
    from tandem.quality.gx_runner import ContractDisagreement, get_validator
    from tandem.quality.rules import add_contract_values, build_rule_specs, load_rules

    specs = build_rule_specs(load_rules(Settings().rules_path), contract(), instruments, AS_OF)
    cols = rule_columns(specs)
    rows = add_contract_values(staged(good_and_bad, contract()), contract(), AS_OF).select(
        *cols, "source_ref")
    hits = evaluate(rows.select(cols), specs)
    report, listed = get_validator().confirm(specs, rows, hits, rows.height)
    assert listed.select("row_id", "_rule").sort("_rule", "row_id").equals(
        hits.sort("_rule", "row_id"))
    wrong = pl.concat([hits, hits.head(1).with_columns(_rule=pl.lit("record_readable"))])
    with pytest.raises(ContractDisagreement, match="record_readable"):
        get_validator().confirm(specs, rows, wrong, rows.height)
