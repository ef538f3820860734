"""Clinical significance criteria a, b, c and the four categories (Jacobson & Truax 1991)."""

from __future__ import annotations

import polars as pl
import pytest

from tandem.core.contracts import Norm, Norms, ReliableChange
from transforms.clinical_significance import classify_clinical_significance, cutoff
from transforms.reliable_change import classify_reliable_change


def with_norms(inst, functional=None, dysfunctional=None):
    """The instrument defined the older way: a threshold and norms, no ``change`` block."""
    return inst.model_copy(update={"change": None, "clinical_cutoff": None,
                                   "reliable_change": ReliableChange(threshold=5),
                                   "norms": Norms(functional=functional,
                                                  dysfunctional=dysfunctional)})


def test_published_cutoffs_are_used_first(instruments):
    assert cutoff(instruments["ORS"]) == (25.0, "published")
    assert cutoff(instruments["ORS"], "adolescent") == (28.0, "published")
    assert cutoff(instruments["PHQ9"]) == (10.0, "published")
    assert cutoff(instruments["GAD7"]) == (8.0, "published")


def test_criterion_c_weighted_between_the_means(instruments):
    """c = (SD_func*M_dys + SD_dys*M_func)/(SD_func + SD_dys): (5*10 + 10*30)/15 = 23.33."""
    inst = with_norms(instruments["ORS"], Norm(mean=30, sd=5), Norm(mean=10, sd=10))
    assert cutoff(inst) == (pytest.approx(350 / 15), "c")


def test_criteria_a_and_b_follow_direction(instruments):
    better = with_norms(instruments["ORS"], functional=Norm(mean=30, sd=5))
    assert cutoff(better) == (20.0, "b")           # within 2 SD of functional mean
    worse = with_norms(instruments["PHQ9"], functional=Norm(mean=4, sd=3))
    assert cutoff(worse) == (10.0, "b")
    dys = with_norms(instruments["ORS"], dysfunctional=Norm(mean=15, sd=4))
    assert cutoff(dys) == (23.0, "a")              # 2 SD beyond the dysfunctional mean
    dys_worse = with_norms(instruments["PHQ9"], dysfunctional=Norm(mean=18, sd=4))
    assert cutoff(dys_worse) == (10.0, "a")


def categorise(instruments, rows):
    df = pl.DataFrame(rows, schema={"instrument": pl.String, "first_score": pl.Float64,
                                    "last_score": pl.Float64}, orient="row")
    df = df.with_columns((pl.col("last_score") - pl.col("first_score")).alias("change"))
    rc = classify_reliable_change(df, instruments)
    return classify_clinical_significance(rc, instruments).collect()


def test_categories_respect_direction(instruments):
    out = categorise(instruments, [
        ("ORS", 18, 26),    # +8 reliable, crosses 25 -> recovered
        ("ORS", 10, 20),    # reliable, still below 25 -> improved
        ("ORS", 22, 26),    # crosses but +4 not reliable -> unchanged
        ("ORS", 30, 20),    # reliable worsening into the clinical range -> harmed
        ("PHQ9", 18, 8),    # -10 reliable, below caseness 10 -> recovered
        ("PHQ9", 25, 15),   # reliable, still >= 10 -> improved
        ("PHQ9", 8, 15),    # +7 -> deteriorated
        ("GAD7", 9, 7),     # crosses 8 but -2 -> unchanged
    ])
    assert out["category"].to_list() == [
        "recovered", "improved", "unchanged", "harmed",
        "recovered", "improved", "harmed", "unchanged",
    ]
    assert out["crossed_cutoff"].to_list() == [True, False, True, False,
                                                True, False, False, True]


def test_no_cutoff_means_no_recovered(instruments):
    out = categorise(instruments, [("SRS", 20, 39)])
    assert out["crossed_cutoff"][0] is None and out["category"][0] is None


def test_phq9_ties_on_the_caseness_cutoff(instruments):
    """10 is a case (NHS Talking Therapies): clinical >= 10, functional < 10."""
    out = categorise(instruments, [
        ("PHQ9", 16, 10),   # -6 reliable, 10 is still a case -> improved
        ("PHQ9", 16, 9),    # -7, 9 < 10 -> recovered
        ("PHQ9", 10, 4),    # 10 was a case -> recovered
        ("PHQ9", 15, 10),   # -5 < 6 -> unchanged
        ("PHQ9", 9, 15),    # +6, from not a case into caseness -> harmed
        ("PHQ9", 4, 10),    # +6, 10 is a case -> harmed
        ("PHQ9", 12, 18),   # +6, a case throughout -> deteriorated
        ("PHQ9", 12, 17),   # +5 -> unchanged
    ])
    assert out["category"].to_list() == ["improved", "recovered", "recovered", "unchanged",
                                         "harmed", "harmed", "deteriorated", "unchanged"]


def test_gad7_ties(instruments):
    out = categorise(instruments, [("GAD7", 8, 4), ("GAD7", 12, 8), ("GAD7", 11, 7),
                                   ("GAD7", 7, 11)])
    assert out["category"].to_list() == ["recovered", "improved", "recovered", "harmed"]


def test_ors_ties_and_the_float_change(instruments):
    """25 is non-clinical (OpenFIT): clinical < 25, functional >= 25."""
    out = categorise(instruments, [
        ("ORS", 20, 25),     # +5 (inclusive), 25 is functional -> recovered
        ("ORS", 25, 30),     # never clinical -> improved
        ("ORS", 30, 25),     # -5, stays functional -> deteriorated
        ("ORS", 25, 20),     # -5, into the clinical range -> harmed
        ("ORS", 20, 24.9),   # +4.9 -> unchanged
        ("ORS", 24.9, 29.9),  # -> recovered
        ("ORS", 3.2, 8.2),   # +5.0 although 8.2 - 3.2 = 4.999999999999999 -> improved
    ])
    assert out["category"].to_list() == ["recovered", "improved", "deteriorated", "harmed",
                                         "unchanged", "recovered", "improved"]


def test_ors_population_cutoffs(instruments):
    df = pl.DataFrame({"instrument": ["ORS"], "first_score": [26.0], "last_score": [31.0]})
    rc = classify_reliable_change(df, instruments)
    adult = classify_clinical_significance(rc, instruments).collect().row(0, named=True)
    teen = classify_clinical_significance(rc, instruments, "adolescent").collect().row(
        0, named=True)
    assert (adult["cutoff"], adult["category"]) == (25.0, "improved")
    assert (teen["cutoff"], teen["category"]) == (28.0, "recovered")


def test_harmed_can_be_folded_into_deteriorated(instruments):
    ors = instruments["ORS"]
    folded = {"ORS": ors.model_copy(update={
        "change": ors.change.model_copy(update={"harmed": False})})}
    assert categorise(folded, [("ORS", 25, 20)])["category"].to_list() == ["deteriorated"]


def test_categories_need_a_pair(instruments):
    df = pl.DataFrame({"instrument": ["PHQ9"], "first_score": [18.0], "last_score": [None]},
                      schema={"instrument": pl.String, "first_score": pl.Float64,
                              "last_score": pl.Float64})
    out = classify_clinical_significance(classify_reliable_change(df, instruments),
                                         instruments).collect().row(0, named=True)
    assert out["change"] is None and out["reliable_change"] is None
    assert out["category"] is None and out["clinical_at_start"] is True
