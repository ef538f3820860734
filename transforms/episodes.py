"""Episodes of care: a client's sessions with one clinic, split where the gap is long.

Gap rule (configurable, ``gap_days``, default 90 from settings ``episode_gap_days``): sessions
are ordered by date; a session more than ``gap_days`` days after the previous session of the
same client at the same clinic starts a new episode. An episode is *open* when its last
session is at most ``open_days`` days before ``as_of`` (it may still continue), otherwise
closed. It *finished* treatment when it has at least 2 attended sessions (NHS Talking
Therapies: "ended with at least 2 attended treatment sessions"; the NHS rates additionally
require the episode to be closed, see ``nhs_talking_therapies``).

``episode_id`` is deterministic: ``{clinic_id}:{client_key}:{YYYY-MM-DD of the first session}``,
so it is stable across re-runs as long as earlier sessions do not change.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

SESSION_KEYS = ["clinic_id", "client_key", "session_date"]
CLIENT_KEYS = ["clinic_id", "client_key"]
MIN_SESSIONS_FINISHED = 2  # NHS Talking Therapies manual: at least 2 attended treatment sessions
# Change needs a pair: the first and last of at least two available scores (NHS Talking
# Therapies: first and last available score of a finished course, measured session by session;
# Gyani et al. 2013, Behav Res Ther 51:597-606: "at least two outcome scores").
MIN_PAIRED_SCORES = 2


def _sessions(administrations: pl.LazyFrame) -> pl.LazyFrame:
    """One row per attended session (any instrument answered that day)."""
    return (
        administrations.group_by(SESSION_KEYS)
        .agg(
            pl.col("session_number").min(),
            # A session has one therapist; if sources disagree keep the most frequent.
            pl.col("therapist_id").mode().sort().first(),
            pl.col("batch_ids").list.explode(keep_nulls=False, empty_as_null=False).unique().sort(),
        )
    )


def assign_episodes(
    administrations: pl.DataFrame | pl.LazyFrame,
    gap_days: int,
    as_of: dt.date,
    open_days: int,
) -> pl.DataFrame:
    """One row per session with its episode (``episode_id``, index in the episode, episode
    start/end, number of sessions, main therapist, ``finished``, ``open``)."""
    return assign_episodes_lazy(administrations, gap_days, as_of, open_days).collect()


def open_expr(as_of: dt.date, open_days: int, end: str = "episode_end") -> pl.Expr:
    """Whether an episode is open on ``as_of``: its last session at most ``open_days`` before.

    Kept apart from the per-client episode state because ``as_of`` changes every run."""
    return (pl.lit(as_of, dtype=pl.Date) - pl.col(end)).dt.total_days() <= open_days


def assign_episodes_lazy(
    administrations: pl.DataFrame | pl.LazyFrame,
    gap_days: int,
    as_of: dt.date,
    open_days: int,
) -> pl.LazyFrame:
    """Lazy version of :func:`assign_episodes`."""
    if open_days < 0:
        raise ValueError("gap_days and open_days must be >= 0")
    return (
        episode_sessions_lazy(administrations, gap_days)
        .with_columns(open_expr(as_of, open_days).alias("open"))
    )


def episode_sessions_lazy(
    administrations: pl.DataFrame | pl.LazyFrame, gap_days: int
) -> pl.LazyFrame:
    """Sessions with their episode, without ``open`` (which depends on the run date): what
    one client's rows alone determine, so it can be kept as per-client state."""
    if gap_days < 0:
        raise ValueError("gap_days and open_days must be >= 0")
    sessions = _sessions(administrations.lazy()).sort([*SESSION_KEYS, "session_number"])
    gap = (pl.col("session_date") - pl.col("session_date").shift(1)).dt.total_days()
    with_seq = sessions.with_columns(
        (gap.over(CLIENT_KEYS).fill_null(0) > gap_days)
        .cast(pl.Int32)
        .cum_sum()
        .over(CLIENT_KEYS)
        .alias("_episode_seq")
    ).with_columns(
        pl.col("session_date").min().over([*CLIENT_KEYS, "_episode_seq"]).alias("episode_start")
    )
    ep_keys = [*CLIENT_KEYS, "episode_start"]
    # Main therapist: the one who saw most sessions of the episode (ties: earliest first session).
    main = (
        with_seq.group_by([*ep_keys, "therapist_id"])
        .agg(pl.len().alias("_n"), pl.col("session_date").min().alias("_first"))
        .group_by(ep_keys)
        .agg(
            pl.col("therapist_id")
            .sort_by(["_n", "_first", "therapist_id"], descending=[True, False, False])
            .first()
            .alias("episode_therapist_id")
        )
    )
    return (
        with_seq.join(main, on=ep_keys, how="left")
        .with_columns(
            pl.concat_str(
                [pl.col("clinic_id"), pl.col("client_key"),
                 pl.col("episode_start").dt.strftime("%Y-%m-%d")],
                separator=":",
            ).alias("episode_id"),
            pl.col("session_date").max().over(ep_keys).alias("episode_end"),
            pl.len().over(ep_keys).cast(pl.Int32).alias("episode_sessions"),
            pl.col("session_date").rank("ordinal").over(ep_keys).cast(pl.Int32)
            .alias("session_index"),
        )
        .with_columns(
            (pl.col("episode_sessions") >= MIN_SESSIONS_FINISHED).alias("finished"),
        )
        .select(
            "episode_id", "clinic_id", "client_key", "session_date", "session_number",
            "therapist_id", "batch_ids", "session_index", "episode_start", "episode_end",
            "episode_sessions", "episode_therapist_id", "finished",
        )
    )


def episode_table(sessions: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """One row per episode (from :func:`assign_episodes`), with ``month`` of its last session.
    ``open`` is carried when the sessions have it (not in the per-client state)."""
    lf = sessions.lazy()
    has_open = "open" in lf.collect_schema()
    return (
        lf
        .group_by("episode_id")
        .agg(
            pl.col("clinic_id").first(),
            pl.col("client_key").first(),
            pl.col("episode_therapist_id").first().alias("therapist_id"),
            pl.col("episode_start").first().alias("start_date"),
            pl.col("episode_end").first().alias("end_date"),
            pl.col("episode_sessions").first().alias("sessions"),
            pl.col("finished").first(),
            *([pl.col("open").first()] if has_open else []),
        )
        .with_columns(pl.col("end_date").dt.truncate("1mo").alias("month"))
    )


def attach_episodes(
    administrations: pl.DataFrame | pl.LazyFrame, sessions: pl.DataFrame | pl.LazyFrame
) -> pl.LazyFrame:
    """Administrations with their ``episode_id`` and ``session_index``."""
    return administrations.lazy().join(
        sessions.lazy().select(*SESSION_KEYS, "episode_id", "session_index"),
        on=SESSION_KEYS,
        how="inner",
    )


def episode_measures(
    administrations: pl.DataFrame | pl.LazyFrame, sessions: pl.DataFrame | pl.LazyFrame
) -> pl.DataFrame:
    """Per episode and measure: first and last *available* score (last observation carried
    forward for dropouts), their dates, sessions attended, ``n_scores``, ``paired`` and change
    (last - first), finished, open. Administrations without a total (too many items missing)
    are not available. With a single score there is no pair: ``last_score`` and ``change`` are
    null (the intake is not carried forward as an outcome)."""
    return episode_measures_lazy(administrations, sessions).collect()


def episode_measures_lazy(
    administrations: pl.DataFrame | pl.LazyFrame, sessions: pl.DataFrame | pl.LazyFrame
) -> pl.LazyFrame:
    """Lazy version of :func:`episode_measures`."""
    order = ["session_date", "session_number"]
    scored = attach_episodes(administrations, sessions).filter(pl.col("total").is_not_null())
    has_open = "open" in sessions.lazy().collect_schema()
    per_measure = scored.group_by(["episode_id", "instrument"]).agg(
        pl.col("session_date").min().alias("first_date"),
        pl.col("session_date").max().alias("last_date"),
        pl.col("total").sort_by(order).first().alias("first_score"),
        pl.col("total").sort_by(order).last().alias("last_score"),
        pl.len().cast(pl.Int32).alias("n_scores"),
    )
    paired = pl.col("n_scores") >= MIN_PAIRED_SCORES
    return (
        per_measure.join(episode_table(sessions), on="episode_id", how="inner")
        .with_columns(paired.alias("paired"),
                      pl.when(paired).then(pl.col("last_score")).alias("last_score"))
        .with_columns((pl.col("last_score") - pl.col("first_score")).alias("change"))
        .select(
            "clinic_id", "client_key", "therapist_id", "episode_id", "instrument",
            "first_date", "last_date", "sessions", "n_scores", "paired", "first_score",
            "last_score", "change", "finished", *(["open"] if has_open else []), "start_date",
            "end_date", "month",
        )
    )
