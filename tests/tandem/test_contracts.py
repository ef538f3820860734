"""The instrument definitions hold DOMAIN.md's published constants exactly."""

from __future__ import annotations

from tandem.contracts import load_instruments


def test_every_instrument_loads_and_matches_its_file():
    assert set(load_instruments()) == {"ORS", "SRS", "PHQ9", "GAD7", "WAISR", "COLLABORATE",
                                       "PRACTICE"}


def test_published_constants():
    inst = load_instruments()
    ors, srs, phq, gad, wai, cr = (inst[c] for c in ("ORS", "SRS", "PHQ9", "GAD7", "WAISR",
                                                      "COLLABORATE"))
    assert (ors.n_items, ors.item_range.min, ors.item_range.max) == (4, 0, 10)
    assert ors.cutoff() == 25 and ors.cutoff("adolescent") == 28 and ors.cutoff("child") == 32
    assert ors.reliable_change.threshold == 5 and ors.higher_is_better
    assert srs.alliance_flags.low_total_below == 36
    assert (phq.n_items, phq.item_range.max, phq.caseness.at_or_above) == (9, 3, 10)
    assert phq.reliable_change.threshold == 6 and not phq.higher_is_better
    assert [(b.min, b.max) for b in phq.severity_bands] == [(0, 4), (5, 9), (10, 14), (15, 19),
                                                            (20, 27)]
    assert (gad.n_items, gad.caseness.at_or_above, gad.reliable_change.threshold) == (7, 8, 4)
    assert [i.loinc for i in phq.items][:2] == ["44250-9", "44255-8"]
    assert phq.loinc == {"panel": "44249-1", "total": "44261-6"}
    assert gad.loinc == {"panel": "69737-5", "total": "70274-6"}
    assert phq.answer_codes == {"LA6568-5": 0, "LA6569-3": 1, "LA6570-1": 2, "LA6571-9": 3}
    subs = {k: v.items for k, v in wai.scoring.subscales.items()}
    assert subs == {"task": [1, 2, 10, 12], "bond": [3, 5, 7, 9], "goal": [4, 6, 8, 11]}
    assert (wai.item_range.min, wai.item_range.max, wai.scoring.total_range.max) == (1, 5, 60)
    assert cr.scoring.top_score.all_items_equal == 9 and cr.item_range.max == 9
