"""The rules in data_contracts/rules.yaml, compiled for one clinic contract."""

from __future__ import annotations

from tandem.core.settings import Settings
from tandem.quality.rules import (
    add_contract_values,
    base_rule,
    build_rule_specs,
    load_rules,
    partial_format,
)
from tests.quality.conftest import AS_OF, contract, staged


def _specs(instruments):
    return build_rule_specs(load_rules(Settings().rules_path), contract(), instruments, AS_OF)


def test_every_rule_of_the_yaml_becomes_an_expectation(instruments):
    rules = load_rules(Settings().rules_path)
    specs = _specs(instruments)
    assert {r["id"] for r in rules} == {base_rule(s.rule).split("[")[0] for s in specs}
    # for_each_column rules: one expectation per column, told apart by '#n'
    required = [s for s in specs if base_rule(s.rule) == "required_field"]
    assert [s.kwargs["column"] for s in required] == [
        "clinic_id", "client_key", "therapist_id", "session_date", "session_number",
        "instrument", "item"]
    assert len({s.rule for s in specs}) == len(specs)  # every expectation has its own name


def test_rule_arguments_hold_no_contract_values(instruments):
    """One suite serves every clinic: contract values live in columns, not in arguments."""
    specs = _specs(instruments)
    other = build_rule_specs(load_rules(Settings().rules_path),
                             contract("riverside", ("T07",)), instruments, AS_OF)
    assert [(s.rule, s.kwargs) for s in specs] == [(s.rule, s.kwargs) for s in other]


def test_reasons_name_the_contract_and_keep_row_placeholders(instruments):
    by_id = {s.rule: s for s in _specs(instruments)}
    assert by_id["known_instrument"].reason.endswith("(ORS, SRS)")
    assert "{therapist_id}" in by_id["known_therapist"].reason  # filled from the row later


def test_contract_values_become_columns():
    frame = add_contract_values(staged(
        "clinic_id,client_id,therapist_id,session_date,session_number,instrument,item,score\n"
        "northside,C1,T01,2025-01-10,1,ORS,1,5\nelsewhere,C1,T09,2025-01-10,1,PHQ9,1,2\n",
        contract()), contract(), AS_OF)
    assert frame["clinic_matches_contract"].to_list() == [True, False]
    assert frame["on_roster"].to_list() == [True, False]
    assert frame["instrument_in_contract"].to_list() == [True, False]
    assert set(frame["as_of"].to_list()) == {AS_OF}


def test_partial_format_leaves_unknown_placeholders():
    assert partial_format("{a} and {b}", {"a": 1}) == "1 and {b}"
