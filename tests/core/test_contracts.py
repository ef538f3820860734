"""The instrument definitions hold DOMAIN.md's published constants exactly."""

from __future__ import annotations

import pytest
import yaml

from tandem.core.contracts import ChangeRule, Instrument, load_instruments
from tandem.core.settings import shipped_contracts_dir


def test_every_instrument_loads_and_matches_its_file():
    assert set(load_instruments()) == {"ORS", "SRS", "PHQ9", "GAD7", "WAISR", "COLLABORATE",
                                       "PRACTICE"}


def test_published_constants():
    inst = load_instruments()
    ors, srs, phq, gad, wai, cr = (inst[c] for c in ("ORS", "SRS", "PHQ9", "GAD7", "WAISR",
                                                      "COLLABORATE"))
    assert (ors.n_items, ors.item_range.min, ors.item_range.max) == (4, 0, 10)
    assert ors.cutoff() == 25 and ors.cutoff("adolescent") == 28 and ors.cutoff("child") == 32
    assert ors.change_rule.threshold == 5 and ors.higher_is_better
    assert ors.change_rule.cutoff.value_belongs_to == "functional" and ors.score_decimals == 1
    assert srs.alliance_flags.low_total_below == 36
    assert (phq.n_items, phq.item_range.max, phq.caseness.at_or_above) == (9, 3, 10)
    assert phq.change_rule.threshold == 6 and not phq.higher_is_better
    assert phq.cutoff() == 10 and phq.change_rule.cutoff.value_belongs_to == "clinical"
    assert [(b.min, b.max) for b in phq.severity_bands] == [(0, 4), (5, 9), (10, 14), (15, 19),
                                                            (20, 27)]
    assert (gad.n_items, gad.caseness.at_or_above, gad.change_rule.threshold) == (7, 8, 4)
    assert gad.cutoff() == 8
    assert (phq.benchmark.d, gad.benchmark.d) == (0.96, 0.80)   # Gaskell et al. 2023
    assert [i.loinc for i in phq.items][:2] == ["44250-9", "44255-8"]
    assert phq.loinc == {"panel": "44249-1", "total": "44261-6"}
    assert gad.loinc == {"panel": "69737-5", "total": "70274-6"}
    assert phq.answer_codes == {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
    subs = {k: v.items for k, v in wai.scoring.subscales.items()}
    assert subs == {"task": [1, 2, 10, 12], "bond": [3, 5, 7, 9], "goal": [4, 6, 8, 11]}
    assert (wai.item_range.min, wai.item_range.max, wai.scoring.total_range.max) == (1, 5, 60)
    assert cr.scoring.top_score.all_items_equal == 9 and cr.item_range.max == 9


def _phq9() -> dict:
    return yaml.safe_load((shipped_contracts_dir() / "instruments" / "PHQ9.yaml").read_text())


def test_a_change_block_is_validated():
    data = _phq9()
    Instrument.model_validate(data)
    for change, message in (
        ({"method": "threshold"}, "needs threshold"),
        ({"method": "JT"}, "needs reliability"),
        ({"method": "GLN", "reliability": 0.8, "sd_pre": 5}, "sd_pre"),
        ({"method": "anchor", "mid_improvement": 5, "threshold": 6}, "belong to method threshold"),
        ({"method": "JT", "reliability": 1.2}, "less than 1"),
        ({"method": "threshold", "threshold": 6, "cutoff": {"kind": "c"}}, "functional mean"),
        ({"method": "threshold", "threshold": 6, "cutoff": {"kind": "published"}}, "value"),
        ({"method": "threshold", "threshold": 6, "cutoff": {"kind": "a", "value": 3}},
         "computed"),
    ):
        with pytest.raises(ValueError, match=message):
            Instrument.model_validate({**data, "change": change})


def test_change_and_the_older_keys_are_not_both_given():
    data = {**_phq9(), "reliable_change": {"threshold": 6}}
    with pytest.raises(ValueError, match="not both"):
        Instrument.model_validate(data)
    older = {k: v for k, v in _phq9().items() if k != "change"}
    older.update(reliable_change={"threshold": 6}, clinical_cutoff={"default": 10})
    rule = Instrument.model_validate(older).change_rule
    assert rule == ChangeRule(method="threshold", threshold=6, cutoff=rule.cutoff)
    assert (rule.cutoff.published(), rule.cutoff.value_belongs_to) == (10, "clinical")


def test_boundary_and_critical_defaults_follow_the_reference_implementation():
    assert ChangeRule(method="threshold", threshold=5).inclusive
    assert ChangeRule(method="anchor", mid_improvement=5).inclusive
    jt = ChangeRule(method="JT", reliability=0.8)
    assert not jt.inclusive and jt.critical_sided == "two" and jt.uses_sample
    assert ChangeRule(method="HA", reliability=0.8).critical_sided == "one"
    assert not ChangeRule(method="JT", reliability=0.8, sd_pre=5).uses_sample
