"""Reliable change of Tandem's instruments: the published thresholds, by direction, inclusive,
at the score's recorded decimals; and Jacobson & Truax (1991) from SD and reliability (the older
YAML keys, kept working). The package's methods and vectors: test_change_methods.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tandem.core.contracts import ChangeRule, ReliableChange
from transforms.reliable_change import (
    RCI_CRITICAL,
    classify_reliable_change,
    rc_index,
    s_diff,
)

# shared/ lies beside the clone (CI); /work/shared on a developer's machine.
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference-data"
if not REFERENCE.exists():
    REFERENCE = Path("/work/shared/reference-data")


def classify(instruments, instrument, first, last):
    df = pl.DataFrame({"instrument": [instrument], "first_score": [float(first)],
                       "last_score": [float(last)], "change": [float(last - first)]})
    return classify_reliable_change(df, instruments).collect().row(0, named=True)


@pytest.mark.parametrize(
    ("instrument", "first", "last", "expected"),
    [
        ("ORS", 20, 25, "improved"),       # +5 is the published ORS reliable change
        ("ORS", 20, 24.9, "unchanged"),
        ("ORS", 25, 20, "deteriorated"),   # higher is better: a drop is worse
        ("PHQ9", 16, 10, "improved"),      # PHQ-9 reliable change >= 6, higher is worse
        ("PHQ9", 16, 11, "unchanged"),
        ("PHQ9", 10, 16, "deteriorated"),
        ("GAD7", 12, 8, "improved"),       # GAD-7 >= 4
        ("GAD7", 8, 11, "unchanged"),
    ],
)
def test_published_thresholds_respect_direction(instruments, instrument, first, last, expected):
    assert classify(instruments, instrument, first, last)["reliable_change"] == expected


def test_sdiff_and_rc_hand_computed():
    """SD_pre 10, r_xx .84: SE = 4, S_diff = sqrt(32) = 5.657; 12 points -> RC 2.12."""
    assert s_diff(10, 0.84) == pytest.approx(math.sqrt(32))
    assert rc_index(30, 42, 10, 0.84) == pytest.approx(12 / math.sqrt(32))


def test_ors_plus_five_is_reliable_although_8_2_minus_3_2_is_4_999999999999999(instruments):
    """ORS totals have one decimal: the change is compared at 0.1 precision."""
    assert 8.2 - 3.2 < 5
    row = classify(instruments, "ORS", 3.2, 8.2)
    assert (row["change"], row["reliable_change"]) == (5.0, "improved")
    assert classify(instruments, "ORS", 8.2, 3.2)["reliable_change"] == "deteriorated"


def test_threshold_boundaries_are_inclusive(instruments):
    """NHS Talking Therapies: a change of 6 or more (PHQ-9), 4 or more (GAD-7); ORS 5."""
    assert classify(instruments, "PHQ9", 16, 10)["reliable_change"] == "improved"
    assert classify(instruments, "PHQ9", 10, 16)["reliable_change"] == "deteriorated"
    assert classify(instruments, "GAD7", 8, 12)["reliable_change"] == "deteriorated"
    assert classify(instruments, "ORS", 25, 20)["reliable_change"] == "deteriorated"


def test_computed_rc_from_sd_and_reliability_when_no_threshold(instruments):
    """An instrument defined (the older way) with sd_pre and reliability uses Jacobson &
    Truax: |RC| > qnorm(.975), strictly."""
    ors = instruments["ORS"].model_copy(update={
        "change": None, "reliable_change": ReliableChange(sd_pre=10, reliability=0.84)})
    crit = RCI_CRITICAL * math.sqrt(32)  # 11.09 points
    inst = {"ORS": ors}
    assert ors.change_rule.method == "JT" and ors.change_rule.sd_pre == 10
    assert classify(inst, "ORS", 20, 20 + crit + 0.1)["reliable_change"] == "improved"
    assert classify(inst, "ORS", 20, 20 + crit - 0.1)["reliable_change"] == "unchanged"
    assert classify(inst, "ORS", 20, 20 - crit - 0.1)["reliable_change"] == "deteriorated"
    assert classify(inst, "ORS", 20, 32)["change_index"] == pytest.approx(12 / math.sqrt(32))


def test_the_older_threshold_key_still_works(instruments):
    """Backward compatible: ``reliable_change: {threshold}`` without a ``change`` block."""
    phq = instruments["PHQ9"].model_copy(update={
        "change": None, "reliable_change": ReliableChange(threshold=6),
        "clinical_cutoff": {"default": 10}})
    rule = phq.change_rule
    assert (rule.method, rule.threshold, rule.inclusive) == ("threshold", 6, True)
    assert rule.cutoff.published() == 10 and rule.cutoff.value_belongs_to == "clinical"
    assert classify({"PHQ9": phq}, "PHQ9", 16, 10)["reliable_change"] == "improved"


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference data not mounted")
def test_jacobson_truax_table2_das_pairs_match_the_formula(instruments):
    """J&T 1991 Table 2 DAS pairs: our RC equals (post - pre) / sqrt(2 (SD sqrt(1 - r))^2)
    with the pre-test SD of the sample and an assumed reliability (the formula, per pair)."""
    das = pl.read_csv(REFERENCE / "jtrci_jt1991_table2_das.csv")
    sd, rel = float(das["pre"].std()), 0.84
    inst = {"DAS": instruments["ORS"].model_copy(update={
        "code": "DAS", "change": ChangeRule(method="JT", sd_pre=sd, reliability=rel)})}
    df = das.select(pl.lit("DAS").alias("instrument"), pl.col("pre").alias("first_score"),
                    pl.col("post").alias("last_score"),
                    (pl.col("post") - pl.col("pre")).alias("change"))
    out = classify_reliable_change(df, inst).collect()
    expected = (das["post"] - das["pre"]).to_numpy() / (np.sqrt(2) * sd * np.sqrt(1 - rel))
    assert np.allclose(out["change_index"].to_numpy(), expected)
    assert (out["reliable_change"] == "improved").sum() == int((expected > RCI_CRITICAL).sum())
    assert (out["reliable_change"] == "deteriorated").sum() == int(
        (expected < -RCI_CRITICAL).sum())
