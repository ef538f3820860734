"""Clinical significance criteria a, b, c and the four categories (Jacobson & Truax 1991)."""

from __future__ import annotations

import polars as pl
import pytest

from tandem.contracts import Norm, Norms
from transforms.clinical_significance import classify_clinical_significance, cutoff
from transforms.reliable_change import classify_reliable_change


def with_norms(inst, functional=None, dysfunctional=None):
    return inst.model_copy(update={"clinical_cutoff": None,
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
        ("ORS", 30, 20),    # reliable worsening -> deteriorated
        ("PHQ9", 18, 8),    # -10 reliable, below caseness 10 -> recovered
        ("PHQ9", 25, 15),   # reliable, still >= 10 -> improved
        ("PHQ9", 8, 15),    # +7 -> deteriorated
        ("GAD7", 9, 7),     # crosses 8 but -2 -> unchanged
    ])
    assert out["category"].to_list() == [
        "recovered", "improved", "unchanged", "deteriorated",
        "recovered", "improved", "deteriorated", "unchanged",
    ]
    assert out["crossed_cutoff"].to_list() == [True, False, True, False,
                                                True, False, False, True]


def test_no_cutoff_means_no_recovered(instruments):
    out = categorise(instruments, [("SRS", 20, 39)])
    assert out["crossed_cutoff"][0] is None and out["category"][0] is None
