"""Pre-post d (improvement positive) and the severity-adjusted effect size."""

from __future__ import annotations

import polars as pl
import pytest

from transforms.effect_sizes import effect_sizes, with_adjusted_improvement


def frame_(pre, post, higher_is_better, group=None):
    n = len(pre)
    return pl.DataFrame({
        "instrument": ["X"] * n, "clinic_id": group or ["A"] * n,
        "client_key": [f"k{i}" for i in range(n)], "finished": [True] * n,
        "first_score": pre, "last_score": post,
        "improvement": [(b - a) if higher_is_better else (a - b) for a, b in zip(pre, post,
                                                                                   strict=True)],
    })


def test_pre_post_d_is_mean_improvement_over_sd_pre():
    """PHQ-9-like: pre 10,14,18 (SD 4), post 6,8,10: d = (14 - 8)/4 = 1.5."""
    lf = with_adjusted_improvement(frame_([10, 14, 18], [6, 8, 10], False).lazy())
    row = effect_sizes(lf, ["clinic_id"]).collect().row(0, named=True)
    assert row["d"] == pytest.approx(1.5) and row["n"] == 3
    assert row["d_ci_low"] < 1.5 < row["d_ci_high"]


def test_severity_adjustment_does_not_punish_a_sicker_clinic():
    """Improvement depends only on intake; clinic B has sicker clients, so its raw mean
    improvement is larger, but adjusted they are the same."""
    pre = [10, 12, 14, 20, 22, 24]
    post = [p - 0.5 * p for p in pre]           # improvement = 0.5 * intake
    df = frame_(pre, post, False, group=["A"] * 3 + ["B"] * 3)
    out = effect_sizes(with_adjusted_improvement(df.lazy()), ["clinic_id"]).collect()
    a, b = out.sort("clinic_id")["adjusted_d"].to_list()
    assert a == pytest.approx(b)
    raw = out.sort("clinic_id")["mean_pre"].to_list()
    assert raw[0] < raw[1]
