""""Off track" flag for open episodes.

Expected trajectory: for each outcome instrument and session index k (1-based position of the
administration among the episode's scored administrations, capped at ``MAX_INDEX``), the
improvement so far (current - intake, positive = better) is regressed on the intake score
over all episodes: expected_k(intake) = a_k + b_k * intake, with residual SD s_k. An open
episode is *off track* when its latest improvement is below expected_k - ``z`` * s_k
(default z = 1: roughly the bottom 16% of comparable clients; configurable, as published
tracking bands differ by system), or when its change so far is a reliable deterioration.

An open episode with a single score has no trajectory yet: it is *not assessable* (``assessable``
false; ``below_expected``, ``reliably_deteriorated`` and ``off_track`` null), neither on nor off
track. It stays in ``off_track_episode`` (the quality team sees every open episode) and in the
``open_episodes`` count, but not in the off-track rate's denominator (``assessable`` episodes).
"""

from __future__ import annotations

import polars as pl

from transforms.reliable_change import improvement_expr

MAX_INDEX = 12
DEFAULT_Z = 1.0


ORDER = ["session_date", "session_number"]


def trajectory(
    admins_ep: pl.LazyFrame, outcome_codes: list[str], directions: pl.LazyFrame
) -> pl.LazyFrame:
    """Per scored outcome administration after the first of its episode: ``k`` (capped at
    ``MAX_INDEX``), ``intake`` and ``so_far`` (improvement since intake, + = better).
    One client's rows decide it, so it is per-client state; ``directions`` has
    ``instrument`` and ``higher_is_better``."""
    return (
        admins_ep.filter(pl.col("instrument").is_in(outcome_codes) & pl.col("total").is_not_null())
        .with_columns(
            pl.col("total").sort_by(ORDER).first().over(["episode_id", "instrument"])
            .alias("intake"),
            pl.col("total").rank("ordinal").over(
                ["episode_id", "instrument"], order_by=ORDER
            ).clip(upper_bound=MAX_INDEX).alias("k"),
        )
        .join(directions, on="instrument")
        .with_columns(improvement_expr(pl.col("total") - pl.col("intake")).alias("so_far"))
        .filter(pl.col("k") > 1)
    )


def latest_position(traj: pl.LazyFrame) -> pl.LazyFrame:
    """Per episode and outcome measure: the latest ``k``, ``intake`` and ``improvement``."""
    return traj.group_by(["episode_id", "instrument"]).agg(
        pl.col("k").sort_by(ORDER).last(),
        pl.col("intake").first(),
        pl.col("so_far").sort_by(ORDER).last().alias("improvement"),
    )


def trajectory_model(traj: pl.LazyFrame) -> pl.LazyFrame:
    """Per instrument and k: OLS of improvement-so-far on intake over all episodes
    (``a``, ``b``, ``resid_sd``). Needs only ``instrument``, ``k``, ``intake``, ``so_far``."""
    x, y = pl.col("intake"), pl.col("so_far")
    return (
        traj.group_by(["instrument", "k"])
        .agg(
            (pl.cov(x, y) / x.var()).fill_nan(0.0).fill_null(0.0).alias("b"),
            x.mean().alias("_xm"),
            y.mean().alias("_ym"),
            x.var().fill_null(0.0).alias("_vx"),
            y.var().fill_null(0.0).alias("_vy"),
            pl.len().alias("_n"),
        )
        .with_columns(
            (pl.col("_ym") - pl.col("b") * pl.col("_xm")).alias("a"),
            # Residual SD from moments: SSR = (n-1)(var_y - b^2 var_x), on n-2 df.
            ((pl.col("_n") - 1) * (pl.col("_vy") - pl.col("b") ** 2 * pl.col("_vx")))
            .clip(0.0).truediv((pl.col("_n") - 2).clip(1)).sqrt().alias("resid_sd"),
        )
        .select("instrument", "k", "a", "b", "resid_sd")
    )


def flag_off_track(
    classified: pl.LazyFrame,
    latest: pl.LazyFrame,
    model: pl.LazyFrame,
    outcome_codes: list[str],
    z: float = DEFAULT_Z,
) -> pl.LazyFrame:
    """Open episodes with their latest position compared with the expected trajectory."""
    open_eps = classified.filter(
        pl.col("open") & pl.col("instrument").is_in(outcome_codes)
    ).select(
        "episode_id", "clinic_id", "client_key", "therapist_id", "instrument",
        "first_date", "last_date", "sessions", "month", "reliable_change",
    )
    return (
        open_eps.join(latest, on=["episode_id", "instrument"], how="left")
        .join(model, on=["instrument", "k"], how="left")
        .with_columns((pl.col("a") + pl.col("b") * pl.col("intake")).alias("expected_improvement"))
        .with_columns(pl.col("k").is_not_null().alias("assessable"))
        .with_columns(
            pl.when(pl.col("assessable")).then(
                (pl.col("improvement") < pl.col("expected_improvement")
                 - z * pl.col("resid_sd")).fill_null(False)).alias("below_expected"),
            pl.when(pl.col("assessable")).then(
                (pl.col("reliable_change") == "deteriorated").fill_null(False))
            .alias("reliably_deteriorated"),
        )
        .with_columns(
            (pl.col("below_expected") | pl.col("reliably_deteriorated")).alias("off_track")
        )
        .drop("a", "b")
    )


def off_track(
    admins_ep: pl.LazyFrame,
    classified: pl.LazyFrame,
    outcome_codes: list[str],
    z: float = DEFAULT_Z,
) -> pl.LazyFrame:
    """One row per open episode and outcome measure with ``expected_improvement``,
    ``improvement``, ``below_expected``, ``reliably_deteriorated`` and ``off_track``."""
    traj = trajectory(
        admins_ep, outcome_codes, classified.select("instrument", "higher_is_better").unique()
    )
    return flag_off_track(classified, latest_position(traj), trajectory_model(traj),
                          outcome_codes, z)
