"""NHS Talking Therapies metrics, their exact denominators and the June 2020 national check."""

from __future__ import annotations

import polars as pl
import pytest

from transforms.clinical_significance import classify_clinical_significance
from transforms.nhs_talking_therapies import episode_flags, rates
from transforms.reliable_change import classify_reliable_change


def episodes(instruments, pairs, open_=False, sessions=3):
    """pairs: list of ((phq_first, phq_last), (gad_first, gad_last)) per episode."""
    rows = []
    for e, (phq, gad) in enumerate(pairs):
        for code, (a, b) in (("PHQ9", phq), ("GAD7", gad)):
            rows.append({"episode_id": f"e{e}", "clinic_id": "C1", "client_key": f"k{e}",
                         "therapist_id": "T1", "instrument": code, "first_score": float(a),
                         "last_score": float(b), "change": float(b - a),
                         "sessions": sessions, "finished": sessions >= 2, "open": open_,
                         "month": None, "first_date": None, "last_date": None})
    df = pl.DataFrame(rows).with_columns(pl.col("month", "first_date", "last_date")
                                         .cast(pl.Date))
    rc = classify_reliable_change(df, instruments)
    return episode_flags(classify_clinical_significance(rc, instruments), instruments).collect()


def one(instruments, phq, gad, **kw):
    return episodes(instruments, [(phq, gad)], **kw).row(0, named=True)


def test_caseness_is_phq9_ge_10_or_gad7_ge_8(instruments):
    assert one(instruments, (10, 0), (0, 0))["caseness_start"] is True
    assert one(instruments, (9, 0), (8, 0))["caseness_start"] is True
    assert one(instruments, (9, 0), (7, 0))["caseness_start"] is False


def test_recovery_is_caseness_at_start_and_not_at_end(instruments):
    assert one(instruments, (12, 9), (9, 7))["recovered"] is True
    assert one(instruments, (12, 9), (9, 8))["recovered"] is False   # GAD-7 still a case


def test_reliable_improvement_needs_one_drop_and_no_rise(instruments):
    assert one(instruments, (16, 10), (8, 8))["reliable_improvement"] is True
    both = one(instruments, (16, 10), (4, 8))                       # GAD-7 rose by 4
    assert both["reliable_improvement"] is False and both["reliable_deterioration"] is True
    assert one(instruments, (16, 11), (10, 7))["reliable_improvement"] is False


def test_reliable_recovery_is_recovery_and_reliable_improvement(instruments):
    assert one(instruments, (16, 8), (12, 6))["reliable_recovery"] is True
    assert one(instruments, (11, 8), (9, 6))["reliable_recovery"] is False  # not reliable


def test_finished_treatment_needs_two_sessions_and_an_ended_episode(instruments):
    assert one(instruments, (16, 8), (12, 6))["finished_treatment"] is True
    assert one(instruments, (16, 8), (12, 6), sessions=1)["finished_treatment"] is False
    assert one(instruments, (16, 8), (12, 6), open_=True)["finished_treatment"] is False


def test_recovery_rate_denominator_excludes_not_at_caseness(instruments):
    flags = episodes(instruments, [((16, 8), (12, 6)),   # recovered
                                    ((16, 14), (12, 10)),  # not recovered
                                    ((5, 3), (3, 2))])     # not a case at start
    r = rates(flags, []).collect().row(0, named=True)
    assert (r["finished"], r["not_caseness_at_start"], r["recovered"]) == (3, 1, 1)
    assert r["recovery_rate"] == pytest.approx(1 / 2)
    assert r["reliable_improvement_rate"] == pytest.approx(1 / 3)


def test_june_2020_national_figures():
    """NHS Digital, June 2020: 27,884 recovered / (57,060 finished - 3,200 not at caseness)
    = 51.8%; 39,417 / 57,060 = 69.1% reliable improvement."""
    finished, not_case, recovered, reliable = 57_060, 3_200, 27_884, 39_417
    idx = pl.int_range(0, finished, eager=True)
    flags = pl.DataFrame({
        "client_key": idx.cast(pl.String),
        "finished_treatment": pl.repeat(True, finished, eager=True),
        "caseness_start": idx >= not_case,
        "recovered": (idx >= not_case) & (idx < not_case + recovered),
        "reliable_improvement": idx < reliable,
        "reliable_deterioration": pl.repeat(False, finished, eager=True),
        "reliable_recovery": pl.repeat(False, finished, eager=True),
    })
    r = rates(flags, []).collect().row(0, named=True)
    assert round(100 * r["recovery_rate"], 1) == 51.8
    assert round(100 * r["reliable_improvement_rate"], 1) == 69.1
    assert r["recovery_rate_ci_low"] < r["recovery_rate"] < r["recovery_rate_ci_high"]
