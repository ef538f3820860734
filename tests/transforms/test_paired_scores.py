"""Change needs a pair of scores (NHS Talking Therapies; Gyani et al. 2013).

NHS Talking Therapies compares the first and last *available* PHQ-9 / GAD-7 of a referral that
finished a course of treatment (ended with at least two attended treatment sessions; OHID
Fingertips glossary, NHS Digital annual report appendix B), measures being taken session by
session (NHS England service standards). Gyani, Shafran, Layard & Clark (2013, Behav Res Ther
51:597-606) analysed patients who "had at least two outcome scores". With one score there is
no pair: no change, no reliable-change category, and the episode leaves every denominator that
needs a pair (it is not "unchanged" with its intake carried forward).
"""

from __future__ import annotations

import polars as pl

from tests.transforms.conftest import answers, day, frame
from transforms.marts import MartParams, build_marts

PARAMS = MartParams(as_of=day(400), min_cell_size=1)


def _one_phq9_two_gad7() -> pl.DataFrame:
    """A finished (3 sessions), closed episode: PHQ-9 at intake only, GAD-7 at two sessions."""
    return frame(answers("PHQ9", [2] * 9, date=day(0)) + answers("GAD7", [2] * 7, date=day(0))
                 + answers("GAD7", [1] * 7, date=day(7), session=2)
                 + answers("GAD7", [0] * 7, date=day(14), session=3))


def test_one_score_has_no_change_and_no_category(instruments):
    marts = build_marts(_one_phq9_two_gad7(), instruments, PARAMS)
    phq = marts["episode_measure"].filter(pl.col("instrument") == "PHQ9").row(0, named=True)
    assert phq["n_scores"] == 1 and phq["first_score"] == 18
    assert phq["change"] is None and phq["improvement"] is None
    assert phq["reliable_change"] is None and phq["category"] is None
    gad = marts["episode_measure"].filter(pl.col("instrument") == "GAD7").row(0, named=True)
    assert gad["n_scores"] == 3 and gad["change"] == -14 and gad["category"] == "recovered"


def test_one_score_leaves_the_nhs_talking_therapies_denominators(instruments):
    marts = build_marts(_one_phq9_two_gad7(), instruments, PARAMS)
    assert "NHS_TT" not in marts["episode_outcome"]["instrument"].to_list()
    nhs = marts["dir_nhs_talking_therapies"]
    assert nhs.filter(pl.col("finished") > 0).height == 0


def test_one_score_leaves_the_outcome_rates_and_funnel_denominators(instruments):
    marts = build_marts(_one_phq9_two_gad7(), instruments, PARAMS)
    rates = marts["dir_outcomes"].filter(pl.col("clinic_id").is_null())
    assert rates.filter(pl.col("instrument") == "PHQ9").height == 0   # no PHQ-9 pair at all
    funnel = marts["dir_funnel"].filter(pl.col("clinic_id").is_null()
                                        & (pl.col("period") == "all")
                                        & (pl.col("instrument") == "PHQ9")).row(0, named=True)
    assert (funnel["episodes"], funnel["finished"]) == (1, 0)   # started, no pair to judge
