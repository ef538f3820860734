"""Jacobson & Truax (1991) reliable change and the published thresholds, by direction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tandem.contracts import ReliableChange
from transforms.reliable_change import classify_reliable_change, rc_index, s_diff

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


def test_computed_rc_from_sd_and_reliability_when_no_threshold(instruments):
    """An instrument defined with sd_pre and reliability uses |RC| > 1.96."""
    ors = instruments["ORS"].model_copy(
        update={"reliable_change": ReliableChange(sd_pre=10, reliability=0.84)}
    )
    crit = 1.96 * math.sqrt(32)  # 11.09 points
    inst = {"ORS": ors}
    assert classify(inst, "ORS", 20, 20 + crit + 0.01)["reliable_change"] == "improved"
    assert classify(inst, "ORS", 20, 20 + crit - 0.01)["reliable_change"] == "unchanged"
    assert classify(inst, "ORS", 20, 20 - crit - 0.01)["reliable_change"] == "deteriorated"


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference data not mounted")
def test_jacobson_truax_table2_das_pairs_match_the_formula(instruments):
    """J&T 1991 Table 2 DAS pairs: our RC equals (post - pre) / sqrt(2 (SD sqrt(1 - r))^2)
    with the pre-test SD of the sample and an assumed reliability (the formula, per pair)."""
    das = pl.read_csv(REFERENCE / "jtrci_jt1991_table2_das.csv")
    sd, rel = float(das["pre"].std()), 0.84
    inst = {"DAS": instruments["ORS"].model_copy(update={
        "code": "DAS", "reliable_change": ReliableChange(sd_pre=sd, reliability=rel)})}
    df = das.select(pl.lit("DAS").alias("instrument"), pl.col("pre").alias("first_score"),
                    pl.col("post").alias("last_score"),
                    (pl.col("post") - pl.col("pre")).alias("change"))
    out = classify_reliable_change(df, inst).collect()
    expected = (das["post"] - das["pre"]).to_numpy() / (np.sqrt(2) * sd * np.sqrt(1 - rel))
    assert np.allclose(out["rc_index"].to_numpy(), expected)
    assert (out["reliable_change"] == "improved").sum() == int((expected > 1.96).sum())
    assert (out["reliable_change"] == "deteriorated").sum() == int((expected < -1.96).sum())
