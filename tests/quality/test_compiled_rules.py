"""The compiled contract flags exactly the rows the GX suite flags, rule by rule.

Random staged frames (every column the rules read, with nulls, NaN, repeated keys, dates
before and after the contract's window) go through the Polars pass and through the
reference: the GX suite on every row, as the ingest ran it before
(:mod:`tests.quality.gx_reference`).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.core.settings import Settings
from tandem.quality import compiled_rules
from tandem.quality.compiled_rules import UnsupportedRule, compile_rule, evaluate, rule_columns
from tandem.quality.rules import RuleSpec, build_rule_specs, load_rules
from tests.quality.conftest import AS_OF, contract
from tests.quality.gx_reference import ReferenceSuite
from transforms.staging import ROW_ID


@pytest.fixture(scope="module")
def reference():
    return ReferenceSuite()


@pytest.fixture(scope="module")
def specs(instruments_module):
    return build_rule_specs(load_rules(Settings().rules_path), contract(), instruments_module,
                            AS_OF)


@pytest.fixture(scope="module")
def instruments_module():
    from tandem.core.contracts import load_instruments

    return load_instruments(Settings())


def _maybe(strategy):
    return st.none() | strategy


_text = _maybe(st.sampled_from(["a", "b", "T01", "ORS", "x y", "1", "total", ""]))
_day = _maybe(st.dates(dt.date(2023, 6, 1), dt.date(2025, 12, 31)))
_float = _maybe(st.sampled_from([0.0, 1.0, 3.0, 10.0, 11.0, -1.0, 2.5, float("nan")]))
_int = _maybe(st.integers(-2, 12))
_bool = _maybe(st.booleans())

COLUMNS = {
    "reader_issue": (_text, pl.String), "clinic_id": (_text, pl.String),
    "client_key": (_text, pl.String), "therapist_id": (_text, pl.String),
    "session_date": (_text, pl.String), "session_number": (_text, pl.String),
    "instrument": (_maybe(st.sampled_from(["ORS", "SRS", "PHQ9"])), pl.String),
    "item": (_text, pl.String), "score": (_text, pl.String),
    "kind": (_maybe(st.sampled_from(["item", "total"])), pl.String),
    "clinic_matches_contract": (_bool, pl.Boolean), "instrument_in_contract": (_bool, pl.Boolean),
    "on_roster": (_bool, pl.Boolean), "total_consistent": (_bool, pl.Boolean),
    "session_date_invalid": (_text, pl.String), "session_number_invalid": (_text, pl.String),
    "item_invalid": (_text, pl.String), "score_invalid": (_text, pl.String),
    "session_date_parsed": (_day, pl.Date), "started_on": (_day, pl.Date),
    "as_of": (_day, pl.Date), "item_int": (_int, pl.Int16), "n_items": (_int, pl.Int16),
    "session_number_int": (_int, pl.Int32), "file_key": (st.integers(0, 1), pl.Int64),
    "score_num": (_float, pl.Float64), "item_min": (_float, pl.Float64),
    "item_max": (_float, pl.Float64), "total_min": (_float, pl.Float64),
    "total_max": (_float, pl.Float64),
}


@st.composite
def staged_frames(draw, min_rows: int = 0):
    n = draw(st.integers(min_rows, 24))
    data = {name: draw(st.lists(strategy, min_size=n, max_size=n))
            for name, (strategy, _) in COLUMNS.items()}
    # repeated keys are what uniqueness is about: copy some rows' keys onto others
    key = ["file_key", "clinic_id", "client_key", "instrument", "session_number_int", "kind",
           "item_int"]
    for _ in range(draw(st.integers(0, n // 2)) if n > 1 else 0):
        src, dst = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        for c in key:
            data[c][dst] = data[c][src]
    ids = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    return pl.DataFrame({ROW_ID: ids, **data},
                        schema={ROW_ID: pl.Int64, **{k: t for k, (_, t) in COLUMNS.items()}})


def _compiled(frame: pl.DataFrame, specs: list[RuleSpec]) -> dict[str, set[int]]:
    hits = evaluate(frame.select(rule_columns(specs)), specs)
    out: dict[str, set[int]] = {s.rule: set() for s in specs}
    for row_id, rule in hits.iter_rows():
        out[rule].add(row_id)
    return out


_SETTINGS = settings(max_examples=25, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


@_SETTINGS
@given(frame=staged_frames())
def test_rules_yaml_compiled_flags_what_gx_flags(reference, specs, frame):
    assert _compiled(frame, specs) == reference.unexpected(frame.select(rule_columns(specs)),
                                                           specs)


# The branches rules.yaml does not use today, as rules.py can write them.
OTHER_SPECS = [
    RuleSpec("between_both", "expect_column_values_to_be_between",
             {"column": "score_num", "min_value": 0, "max_value": 10}, "", "score"),
    RuleSpec("between_max", "expect_column_values_to_be_between",
             {"column": "item_int", "max_value": 4}, "", "item"),
    RuleSpec("pair_default", "expect_column_pair_values_a_to_be_greater_than_b",
             {"column_A": "item_max", "column_B": "score_num"}, "", "score"),
    RuleSpec("pair_strict_neither", "expect_column_pair_values_a_to_be_greater_than_b",
             {"column_A": "as_of", "column_B": "session_date_parsed",
              "ignore_row_if": "neither"}, "", "session_date"),
    RuleSpec("unique_any", "expect_compound_columns_to_be_unique",
             {"column_list": ["client_key", "item_int", "score_num"],
              "ignore_row_if": "any_value_is_missing"}, "", None),
    RuleSpec("unique_never", "expect_compound_columns_to_be_unique",
             {"column_list": ["therapist_id", "session_date_parsed"],
              "ignore_row_if": "never"}, "", None),
    RuleSpec("in_set_text", "expect_column_values_to_be_in_set",
             {"column": "item", "value_set": ["1", "total"]}, "", "item"),
    RuleSpec("per_instrument[ORS]", "expect_column_values_to_not_be_null",
             {"column": "score_num", "row_condition": 'instrument=="ORS"',
              "condition_parser": "pandas"}, "", "score", instrument="ORS"),
    RuleSpec("where_present", "expect_column_values_to_be_in_set",
             {"column": "on_roster", "value_set": [True],
              "row_condition": 'instrument=="SRS" and therapist_id.notna()',
              "condition_parser": "pandas"}, "", "therapist_id", instrument="SRS",
             only_where_present="therapist_id"),
]


@_SETTINGS
@given(frame=staged_frames())
def test_other_supported_forms_compiled_flag_what_gx_flags(reference, frame):
    assert _compiled(frame, OTHER_SPECS) == reference.unexpected(
        frame.select(rule_columns(OTHER_SPECS)), OTHER_SPECS)


def test_a_broken_compiled_rule_is_caught(reference, specs, monkeypatch):
    """The comparison can fail: a range check off by one is found on random frames."""
    original = compiled_rules._a_greater_than_b

    def off_by_one(kw, schema):
        return original({**kw, "or_equal": False}, schema)

    monkeypatch.setitem(compiled_rules.SUPPORTED,
                        "expect_column_pair_values_a_to_be_greater_than_b",
                        (off_by_one, compiled_rules.SUPPORTED[
                            "expect_column_pair_values_a_to_be_greater_than_b"][1]))
    disagreed = []

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(frame=staged_frames(min_rows=4))
    def probe(frame):
        if _compiled(frame, specs) != reference.unexpected(frame.select(rule_columns(specs)),
                                                           specs):
            disagreed.append(frame)

    probe()
    assert disagreed


def test_an_unsupported_expectation_is_named():
    spec = RuleSpec("odd", "expect_column_values_to_match_regex",
                    {"column": "item", "regex": "^[0-9]+$"}, "", "item")
    with pytest.raises(UnsupportedRule, match="expect_column_values_to_match_regex"):
        compile_rule(spec, {"item": pl.String})


def test_a_free_where_condition_is_refused():
    spec = RuleSpec("odd", "expect_column_values_to_not_be_null",
                    {"column": "score", "row_condition": "(score_num > 3)",
                     "condition_parser": "pandas"}, "", "score")
    with pytest.raises(UnsupportedRule, match="free pandas condition"):
        compile_rule(spec, {"score": pl.String, "score_num": pl.Float64})
