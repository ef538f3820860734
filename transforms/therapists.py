"""Therapist comparisons by empirical-Bayes shrinkage, never raw ranks.

Per outcome instrument, every finished episode's severity-adjusted residual improvement (see
effect_sizes) is attributed to its main therapist. A therapist is the pair (clinic, therapist):
ids are local to a clinic (T01 at two clinics are two people). The model has a clinic fixed
effect: residual = clinic_c + u_therapist + e, so a therapist is compared with the average of
their own clinic (the clinic's mean residual), not with other clinics' therapists. It is fitted
by the method of moments: sigma^2 = pooled within-therapist variance, tau^2 = max(0,
sum_j (mean_j - clinic mean)^2 / (J - C) - mean(sigma^2 / n_j)) over J therapists in C
clinics (J - C degrees of freedom; an approximation that ignores each therapist's weight in
their clinic mean). Each therapist's clinic-centred mean is shrunk towards 0 (their clinic's
average): B_j = tau^2/(tau^2 + sigma^2/n_j), estimate = B_j * centred mean_j, 95% interval
estimate +/- 1.96 sqrt(B_j sigma^2/n_j). About 5% of outcome variance lies between therapists
(Johns et al. 2019), so most intervals will include 0; the mart says so with
``differs_from_average`` instead of a rank.
"""

from __future__ import annotations

import polars as pl

from transforms.stats import Z95


def therapist_effects(adjusted: pl.LazyFrame) -> pl.LazyFrame:
    """Per clinic, therapist and instrument: n, n_clients, raw and shrunken adjusted mean
    improvement relative to the therapist's clinic (points, positive = better), 95% interval,
    share of variance between therapists and ``sigma`` (the within-therapist SD, for
    funnel-plot limits)."""
    keys = ["instrument", "clinic_id", "therapist_id"]
    per = adjusted.group_by(keys).agg(
        pl.len().alias("n"),
        pl.col("client_key").n_unique().alias("n_clients"),
        pl.col("residual").mean().alias("_m"),
        ((pl.col("residual") - pl.col("residual").mean()) ** 2).sum().alias("_ss"),
    ).sort(keys, nulls_last=True)  # fixed order: the sums over therapists are order-free
    nf = pl.col("n").cast(pl.Float64)
    per_inst = pl.col("instrument")
    per_clinic = ["instrument", "clinic_id"]
    clinic_mean = (pl.col("_m") * nf).sum().over(per_clinic) / nf.sum().over(per_clinic)
    sigma2 = (pl.col("_ss").sum().over(per_inst)
              / (pl.col("n").sum() - pl.len()).over(per_inst).cast(pl.Float64).clip(1.0))
    dof = (pl.len().over(per_inst) - pl.col("clinic_id").n_unique().over(per_inst))
    return (
        per.with_columns(sigma2.alias("_sigma2"),
                         (pl.col("_m") - clinic_mean).alias("raw_adjusted_mean"))
        .with_columns(
            pl.when(dof > 0).then(
                (pl.col("raw_adjusted_mean") ** 2).sum().over(per_inst) / dof
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
            pl.lit("empirical Bayes shrinkage of intake-adjusted improvement, relative to the "
                   "therapist's clinic").alias("method"),
        )
        .drop("_m", "_ss", "_sigma2", "_b", "_se")
    )
