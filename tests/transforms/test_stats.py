"""Interval helpers agree with scipy's own implementations."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from transforms.stats import fisher_z_ci, ols_cluster, pearson_with_ci, wilson_exprs


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (27_884, 53_860), (10, 10)])
def test_wilson_matches_scipy(k, n):
    got = pl.DataFrame({"k": [k], "n": [n]}).select(
        *wilson_exprs(pl.col("k"), pl.col("n"), "rate")).row(0)
    ci = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert got[0] == pytest.approx(k / n)
    assert got[1] == pytest.approx(ci.low, abs=1e-9) and got[2] == pytest.approx(ci.high, abs=1e-9)


def test_wilson_with_no_cases_is_null():
    assert pl.DataFrame({"k": [0], "n": [0]}).select(
        *wilson_exprs(pl.col("k"), pl.col("n"), "rate")).row(0) == (None, None, None)


def test_fisher_z_interval_hand_computed():
    """r = .28, n = 103: z = atanh(.28) = 0.2877, se = 0.1, z +/- 1.96*0.1 back-transformed."""
    lo, hi = fisher_z_ci(0.28, 103)
    z = math.atanh(0.28)
    assert lo == pytest.approx(math.tanh(z - 0.196), abs=1e-4)
    assert hi == pytest.approx(math.tanh(z + 0.196), abs=1e-4)


def test_pearson_matches_scipy_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = 0.3 * x + rng.normal(size=200)
    res = pearson_with_ci(x, y)
    ref = sps.pearsonr(x, y).confidence_interval(0.95)
    assert res["ci_low"] == pytest.approx(ref.low, abs=1e-6)
    assert res["ci_high"] == pytest.approx(ref.high, abs=1e-6)


def test_ols_matches_scipy_linregress_without_clusters():
    rng = np.random.default_rng(2)
    x = rng.normal(size=100)
    y = 2 + 3 * x + rng.normal(size=100)
    fit = ols_cluster(y, x)
    ref = sps.linregress(x, y)
    assert fit.coef[1] == pytest.approx(ref.slope)
    assert fit.se[1] == pytest.approx(ref.stderr)


def test_cluster_robust_se_is_wider_with_clustered_errors():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(20), 30)
    xg = rng.normal(size=20)[g]                      # regressor constant within clusters
    y = xg + rng.normal(size=20)[g] * 2 + rng.normal(size=600)
    naive = ols_cluster(y, xg)
    robust = ols_cluster(y, xg, g)
    assert robust.se[1] > 1.5 * naive.se[1] and robust.df == 19
