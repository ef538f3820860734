"""Interval helpers: Wilson for rates, t for means, Fisher z for correlations, OLS with
cluster-robust (by clinic x therapist) standard errors.

The quantiles come from scipy; the formulas are written as Polars expressions so they run
per group without Python loops. Tests check them against scipy's own implementations.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
import polars as pl

CONFIDENCE = 0.95
# The standard library's normal quantile: SciPy costs ~1 s to import, needed only for t and r.
Z95 = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.959963...


def wilson_exprs(k: pl.Expr, n: pl.Expr, prefix: str) -> list[pl.Expr]:
    """Rate k/n with its 95% Wilson score interval (Wilson 1927; the interval
    scipy.stats.binomtest(...).proportion_ci(method="wilson") gives). Null when n = 0."""
    z = Z95
    kf, nf = k.cast(pl.Float64), n.cast(pl.Float64)
    p = kf / nf
    centre = (p + z * z / (2 * nf)) / (1 + z * z / nf)
    half = z / (1 + z * z / nf) * (p * (1 - p) / nf + z * z / (4 * nf * nf)).sqrt()
    ok = n > 0
    return [
        pl.when(ok).then(p).alias(f"{prefix}"),
        pl.when(ok).then((centre - half).clip(0.0, 1.0)).alias(f"{prefix}_ci_low"),
        pl.when(ok).then((centre + half).clip(0.0, 1.0)).alias(f"{prefix}_ci_high"),
    ]


def t_quantile(df: pl.Expr, scalar: bool = False) -> pl.Expr:
    """Two-sided 95% Student t quantile for each row's degrees of freedom (scipy).
    ``scalar=True`` inside ``group_by().agg`` where ``df`` is one value per group (without it
    Polars returns a one-element list per group)."""
    return df.cast(pl.Float64).map_batches(
        lambda s: pl.Series(_sps().t.ppf(0.5 + CONFIDENCE / 2, s.to_numpy()), dtype=pl.Float64),
        return_dtype=pl.Float64,
        returns_scalar=scalar,
    )


def mean_t_exprs(x: str, prefix: str) -> list[pl.Expr]:
    """Aggregations: mean of ``x`` with a 95% t interval (for use inside ``group_by().agg``)."""
    n = pl.col(x).count()
    se = pl.col(x).std() / n.cast(pl.Float64).sqrt()
    q = t_quantile(n - 1, scalar=True)
    mean = pl.col(x).mean()
    return [
        mean.alias(prefix),
        (mean - q * se).alias(f"{prefix}_ci_low"),
        (mean + q * se).alias(f"{prefix}_ci_high"),
    ]


def fisher_z_ci(r: float, n: int) -> tuple[float, float]:
    """95% interval of a Pearson r by Fisher's z (atanh), se = 1/sqrt(n - 3)."""
    if n <= 3 or not math.isfinite(r):
        return (math.nan, math.nan)
    z = math.atanh(max(min(r, 1 - 1e-15), -1 + 1e-15))
    se = 1.0 / math.sqrt(n - 3)
    return (math.tanh(z - Z95 * se), math.tanh(z + Z95 * se))


def pearson_with_ci(x: np.ndarray, y: np.ndarray) -> dict[str, float | int]:
    """Pearson r (scipy) with a Fisher-z 95% interval; NaN when fewer than 4 pairs."""
    mask = np.isfinite(x) & np.isfinite(y)
    x, y = x[mask], y[mask]
    n = int(len(x))
    if n < 4 or np.std(x) == 0 or np.std(y) == 0:
        return {"estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    r = float(_sps().pearsonr(x, y).statistic)
    lo, hi = fisher_z_ci(r, n)
    return {"estimate": r, "ci_low": lo, "ci_high": hi, "n": n}


@dataclass(frozen=True)
class OlsResult:
    coef: np.ndarray
    vcov: np.ndarray
    df: int
    n: int
    n_clusters: int

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.vcov), 0, None))

    def ci(self, j: int) -> tuple[float, float]:
        return self.contrast_ci(np.eye(len(self.coef))[j])[1:]

    def contrast_ci(self, c: np.ndarray) -> tuple[float, float, float]:
        """Estimate of c'b with its 95% t interval (e.g. an adjusted group mean)."""
        est = float(c @ self.coef)
        se = float(np.sqrt(max(c @ self.vcov @ c, 0.0)))
        q = float(_sps().t.ppf(0.5 + CONFIDENCE / 2, self.df)) if self.df > 0 else math.nan
        return est, est - q * se, est + q * se


def ols_cluster(y: np.ndarray, x: np.ndarray, clusters: np.ndarray | None = None) -> OlsResult:
    """OLS of y on [1, x] with CR1 cluster-robust standard errors (Liang & Zeger 1986; the
    Stata small-sample factor G/(G-1)·(n-1)/(n-k)); t on G-1 df. Without clusters, classic SEs.

    Clustering by therapist, because clients of one therapist share the therapist's effect and
    their outcomes are not independent. ``clusters`` must identify a therapist within their
    clinic (ids are clinic-local): see ``practice.therapist_units``.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    X = np.column_stack([np.ones(len(y)), x])
    n, k = X.shape
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    xtx_inv = np.linalg.pinv(X.T @ X)
    if clusters is None:
        sigma2 = float(resid @ resid) / max(n - k, 1)
        return OlsResult(coef, xtx_inv * sigma2, n - k, n, n)
    codes, inv = np.unique(clusters, return_inverse=True)
    g = len(codes)
    scores = np.zeros((g, k))
    np.add.at(scores, inv, X * resid[:, None])
    meat = scores.T @ scores
    factor = (g / max(g - 1, 1)) * ((n - 1) / max(n - k, 1))
    vcov = factor * xtx_inv @ meat @ xtx_inv
    return OlsResult(coef, vcov, g - 1, n, g)


def _sps():  # noqa: ANN202 - scipy.stats, imported when first needed
    from scipy import stats

    return stats
