"""Therapist comparisons are shrunken estimates with intervals, not ranks."""

from __future__ import annotations

import numpy as np
import polars as pl

from transforms.therapists import therapist_effects


def test_no_between_therapist_variance_shrinks_everyone_to_average():
    rng = np.random.default_rng(0)
    n = 400
    df = pl.DataFrame({
        "instrument": ["ORS"] * n, "clinic_id": ["A"] * n,
        "therapist_id": [f"T{i % 10}" for i in range(n)],
        "client_key": [f"k{i}" for i in range(n)], "residual": rng.normal(0, 5, n),
    })
    out = therapist_effects(df.lazy()).collect()
    assert (out["shrunk_estimate"].abs() <= out["raw_adjusted_mean"].abs() + 1e-12).all()
    assert (out["differs_from_average"] == "not distinguishable").sum() >= 9
    assert "rank" not in out.columns


def test_a_clearly_different_therapist_is_detected():
    rng = np.random.default_rng(1)
    n = 600
    t = np.arange(n) % 6
    df = pl.DataFrame({
        "instrument": ["ORS"] * n, "clinic_id": ["A"] * n,
        "therapist_id": [f"T{i}" for i in t], "client_key": [f"k{i}" for i in range(n)],
        "residual": rng.normal(0, 3, n) + np.where(t == 0, 6.0, 0.0),
    })
    out = therapist_effects(df.lazy()).collect().filter(pl.col("therapist_id") == "T0")
    assert out["differs_from_average"][0] == "above"
