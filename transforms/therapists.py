"""Therapist comparisons by empirical-Bayes shrinkage, never raw ranks.

Per outcome instrument, every finished episode's severity-adjusted residual improvement (see
effect_sizes) is attributed to its main therapist. A normal random-effects model
(residual = u_therapist + e) is fitted by the method of moments: sigma^2 = pooled within-
therapist variance, tau^2 = max(0, var(therapist means) - mean(sigma^2 / n_j)). Each
therapist's estimate is shrunk towards 0 (the average therapist): B_j = tau^2/(tau^2 +
sigma^2/n_j), estimate = B_j * mean_j, 95% interval estimate +/- 1.96 sqrt(B_j sigma^2/n_j).
About 5% of outcome variance lies between therapists (Johns et al. 2019), so most intervals
will include 0; the mart says so with ``differs_from_average`` instead of a rank.
"""

from __future__ import annotations

import polars as pl

from transforms.stats import Z95


def therapist_effects(adjusted: pl.LazyFrame) -> pl.LazyFrame:
    """Per clinic, therapist and instrument: n, n_clients, raw and shrunken adjusted mean
    improvement (points, positive = better), 95% interval, share of variance between and
    ``sigma`` (the within-therapist SD, for funnel-plot limits)."""
    keys = ["instrument", "clinic_id", "therapist_id"]
    per = adjusted.group_by(keys).agg(
        pl.len().alias("n"),
        pl.col("client_key").n_unique().alias("n_clients"),
        pl.col("residual").mean().alias("raw_adjusted_mean"),
        ((pl.col("residual") - pl.col("residual").mean()) ** 2).sum().alias("_ss"),
    ).sort(keys, nulls_last=True)  # fixed order: the sums over therapists are order-free
    nf = pl.col("n").cast(pl.Float64)
    per_inst = pl.col("instrument")
    sigma2 = (pl.col("_ss").sum().over(per_inst)
              / (pl.col("n").sum() - pl.len()).over(per_inst).cast(pl.Float64).clip(1.0))
    return (
        per.with_columns(sigma2.alias("_sigma2"))
        .with_columns(
            (pl.col("raw_adjusted_mean").var().over(per_inst)
             - (pl.col("_sigma2") / nf).mean().over(per_inst))
            .fill_null(0.0).fill_nan(0.0).clip(0.0).alias("tau2")
        )
        .with_columns((pl.col("tau2") / (pl.col("tau2") + pl.col("_sigma2") / nf)).alias("_b"))
        .with_columns(
            (pl.col("_b") * pl.col("raw_adjusted_mean")).alias("shrunk_estimate"),
            (pl.col("_b") * pl.col("_sigma2") / nf).sqrt().alias("_se"),
            (pl.col("tau2") / (pl.col("tau2") + pl.col("_sigma2"))).alias("share_between"),
            # Within-therapist SD (pooled over the instrument): the funnel plot's limits are
            # 0 +/- z * sigma / sqrt(n).
            pl.col("_sigma2").sqrt().alias("sigma"),
        )
        .with_columns(
            (pl.col("shrunk_estimate") - Z95 * pl.col("_se")).alias("ci_low"),
            (pl.col("shrunk_estimate") + Z95 * pl.col("_se")).alias("ci_high"),
        )
        .with_columns(
            pl.when(pl.col("ci_low") > 0).then(pl.lit("above"))
            .when(pl.col("ci_high") < 0).then(pl.lit("below"))
            .otherwise(pl.lit("not distinguishable")).alias("differs_from_average"),
            pl.lit("empirical Bayes shrinkage of intake-adjusted improvement").alias("method"),
        )
        .drop("_ss", "_sigma2", "_b", "_se")
    )
