"""Pre-post and severity-adjusted effect sizes per clinic, therapist and month.

Pre-post d = (mean_pre - mean_post) / SD_pre, signed so that improvement is positive
(DOMAIN.md; benchmarks from routine practice: depression ~0.96, anxiety ~0.80, Gaskell et al.
2023). Its 95% interval uses the large-sample variance of a repeated-measures d standardised by
the pre-test SD (Becker 1988; Morris 2000): var = 2(1 - r)/n + d^2/(2n), r = pre-post correlation.

Severity-adjusted: per instrument, the improvement of every finished episode is regressed on
its intake score (pooled over all clinics); a group's adjusted mean improvement is the grand
mean plus the group's mean residual, so a clinic with sicker clients is not punished. Adjusted
d divides that by the instrument's pooled intake SD; its interval is the t interval of the
group's mean residual on the same scale (treating the regression line as known).
"""

from __future__ import annotations

import polars as pl

from transforms.stats import Z95, t_quantile


def with_adjusted_improvement(outcome: pl.LazyFrame) -> pl.LazyFrame:
    """Add ``residual`` (improvement minus its expectation given intake, per instrument) and
    ``sd_pre_all`` / ``mean_improvement_all`` (instrument-wide), for finished episodes."""
    x, y = pl.col("first_score"), pl.col("improvement")
    slope = pl.cov(x, y) / x.var()
    return (
        outcome.filter(pl.col("finished") & y.is_not_null() & x.is_not_null())
        .with_columns(
            slope.over("instrument").fill_nan(0.0).fill_null(0.0).alias("_b"),
            x.mean().over("instrument").alias("_xm"),
            y.mean().over("instrument").alias("mean_improvement_all"),
            x.std().over("instrument").alias("sd_pre_all"),
        )
        .with_columns(
            (y - pl.col("mean_improvement_all") - pl.col("_b") * (x - pl.col("_xm")))
            .alias("residual")
        )
        .drop("_b", "_xm")
    )


def effect_sizes(adjusted: pl.LazyFrame, by: list[str]) -> pl.LazyFrame:
    """Per ``by`` + instrument: n, n_clients, pre-post d with 95% CI, adjusted d with 95% CI."""
    keys = [*by, "instrument"]
    pre, post = pl.col("first_score"), pl.col("last_score")
    n = pl.len()
    out = adjusted.group_by(keys).agg(
        n.alias("n"),
        pl.col("client_key").n_unique().alias("n_clients"),
        pre.mean().alias("mean_pre"),
        post.mean().alias("mean_post"),
        pre.std().alias("sd_pre"),
        pl.corr(pre, post).alias("_r"),
        pl.col("improvement").mean().alias("_imp"),
        pl.col("residual").mean().alias("_res"),
        pl.col("residual").std().alias("_res_sd"),
        pl.col("mean_improvement_all").first().alias("_imp_all"),
        pl.col("sd_pre_all").first().alias("_sd_all"),
    )
    d = pl.col("_imp") / pl.col("sd_pre")
    nf = pl.col("n").cast(pl.Float64)
    se_d = ((2 * (1 - pl.col("_r").fill_nan(0.0)) / nf) + d * d / (2 * nf)).sqrt()
    adj = (pl.col("_imp_all") + pl.col("_res")) / pl.col("_sd_all")
    se_adj = pl.col("_res_sd") / nf.sqrt() / pl.col("_sd_all")
    q = t_quantile(pl.col("n") - 1)
    ok = (pl.col("n") >= 2) & (pl.col("sd_pre") > 0)
    return out.with_columns(
        pl.when(ok).then(d).alias("d"),
        pl.when(ok).then(d - Z95 * se_d).alias("d_ci_low"),
        pl.when(ok).then(d + Z95 * se_d).alias("d_ci_high"),
        pl.when(pl.col("n") >= 2).then(adj).alias("adjusted_d"),
        pl.when(pl.col("n") >= 2).then(adj - q * se_adj).alias("adjusted_d_ci_low"),
        pl.when(pl.col("n") >= 2).then(adj + q * se_adj).alias("adjusted_d_ci_high"),
    ).drop("_r", "_imp", "_res", "_res_sd", "_imp_all", "_sd_all")
