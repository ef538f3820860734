"""The director marts added for the dashboard: plain-float intervals, periods, funnel,
activity, completeness, practice by level / therapist / month, alliance distribution and bins,
therapist sigma. Each checked against a direct computation from the row-level marts."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.transforms.synthetic import generate
from transforms.marts import MartParams, build_marts

AS_OF = dt.date(2024, 12, 31)


@pytest.fixture(scope="module")
def marts(instruments) -> dict[str, pl.DataFrame]:
    return build_marts(generate(3, n_clients=400), instruments, MartParams(as_of=AS_OF))


def test_mean_intervals_are_plain_floats(marts):
    for name, col in (("dir_outcomes", "mean_improvement"), ("dir_practice_use", "mean_share")):
        for c in (col, f"{col}_ci_low", f"{col}_ci_high"):
            assert marts[name].schema[c] == pl.Float64, (name, c)
        ok = marts[name].filter(~pl.col("suppressed") & pl.col(f"{col}_ci_low").is_not_null())
        assert ok.height and (ok[f"{col}_ci_low"] <= ok[col]).all()


def test_period_rows_are_cells_of_their_own(marts):
    per = marts["dir_outcomes_period"]
    assert set(per["period"]) == {"quarter", "year"}
    em = marts["episode_measure"].filter(pl.col("finished") & pl.col("change").is_not_null()
                                         & (pl.col("instrument") == "ORS"))
    year = em.filter(pl.col("month").dt.year() == 2024)
    row = per.filter(pl.col("clinic_id").is_null() & (pl.col("period") == "year")
                     & (pl.col("period_start") == dt.date(2024, 1, 1))
                     & (pl.col("instrument") == "ORS")).row(0, named=True)
    assert row["n"] == year.height
    assert row["n_clients"] == year["client_key"].n_unique()


def test_funnel_uses_the_rates_denominators(marts):
    f = marts["dir_funnel"].filter(pl.col("clinic_id").is_null() & (pl.col("period") == "all"))
    o = marts["dir_outcomes"].filter(pl.col("clinic_id").is_null() & pl.col("month").is_null())
    for r in f.iter_rows(named=True):
        rate = o.filter(pl.col("instrument") == r["instrument"]).row(0, named=True)
        assert r["finished"] == rate["n"]
        assert r["recovered"] == rate["recovered"]
        assert r["episodes"] >= r["finished"] >= r["caseness_at_start"] >= r["recovered"]
    em = marts["episode_measure"].filter((pl.col("instrument") == "ORS")
                                         & pl.col("first_score").is_not_null())
    ors = f.filter(pl.col("instrument") == "ORS").row(0, named=True)
    assert ors["episodes"] == em.height
    fin = em.filter(pl.col("finished") & pl.col("change").is_not_null())
    assert ors["caseness_at_start"] == fin.filter(pl.col("first_score") < 25).height
    assert ors["finished"] == fin.height == em.filter(pl.col("finished")
                                                      & (pl.col("n_scores") >= 2)).height


def test_activity_counts_distinct_clients_per_month(marts):
    s = marts["episode_session"].with_columns(pl.col("session_date").dt.truncate("1mo")
                                              .alias("m"))
    act = marts["dir_activity"].filter(pl.col("clinic_id").is_null()
                                       & (pl.col("period") == "month") & ~pl.col("suppressed"))
    assert act.height
    for r in act.iter_rows(named=True):
        part = s.filter(pl.col("m") == r["period_start"])
        assert r["active_clients"] == part["client_key"].n_unique()
        assert r["sessions"] == part.height
        assert r["new_episodes"] == (part["session_index"] == 1).sum()
    small = marts["dir_activity"].filter(pl.col("suppressed"))
    assert small["active_clients"].null_count() == small.height


def test_completeness_is_exact_per_session(marts):
    s = marts["episode_session"]
    assert {"has_outcome", "has_alliance"} <= set(s.columns)
    row = marts["dir_completeness"].filter(pl.col("clinic_id").is_null()).row(0, named=True)
    assert row["sessions"] == s.height
    assert row["with_outcome"] == s["has_outcome"].sum()
    assert row["alliance_rate"] == pytest.approx(s["has_alliance"].mean())


def test_practice_outcome_per_clinic_practice_and_top_score(marts):
    po = marts["dir_practice_outcome"]
    assert {"clinic_id", "practice", "level", "reliable_improvement_rate",
            "reliable_improvement_rate_ci_low", "observational"} <= set(po.columns)
    assert po["clinic_id"].null_count() < po.height and po["clinic_id"].null_count() > 0
    assert "all" in set(po["practice"])
    if marts["episode_measure"]["top_score_share"].drop_nulls().len():  # with CollaboRATE
        assert "top_score" in set(po["practice"])
    ok = po.filter(~pl.col("suppressed"))
    assert (ok["reliable_improvement_rate"] == ok["reliably_improved"] / ok["n"]).all()
    assert "top_score" in set(marts["dir_practice_effect"]["practice"]) or \
        marts["episode_measure"]["top_score_share"].drop_nulls().is_empty()


def test_practice_use_by_therapist_and_month(marts):
    use = marts["dir_practice_use"]
    assert use["therapist_id"].drop_nulls().len() and use["month"].drop_nulls().len()
    assert use.filter(pl.col("therapist_id").is_not_null() & pl.col("month").is_not_null()
                      ).is_empty()


def test_therapist_sigma_and_alliance_marts(marts):
    te = marts["dir_therapist_effect"].filter(~pl.col("suppressed"))
    assert (te["sigma"] > 0).all()
    dist = marts["dir_alliance_distribution"]
    below = dist.filter((pl.col("metric") == "below_cutoff") & pl.col("clinic_id").is_null())
    sa = marts["session_alliance"]
    r = below.row(0, named=True)
    assert r["n"] == sa.height and r["below"] == sa["low_alliance"].sum()
    bands = dist.filter((pl.col("metric") == "band") & pl.col("clinic_id").is_null()
                        & (pl.col("instrument") == "SRS"))
    assert bands["band_low"].max() <= 38
    bins = marts["dir_alliance_outcome_bins"]
    shown = bins.filter(~pl.col("suppressed"))
    assert shown.height and (shown["n_clients"] >= 10).all()
    assert bins.filter(pl.col("suppressed"))["mean_improvement"].null_count() == \
        bins.filter(pl.col("suppressed")).height
    assert {"slope", "intercept"} <= set(marts["dir_alliance_outcome"].columns)
