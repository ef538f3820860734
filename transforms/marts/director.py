"""The director marts (``dir_*``): aggregates for clinic directors, each row a cell that
``transforms.suppression`` may suppress. Built from the per-episode frames the composition in
``transforms.marts`` prepares; pure Polars."""

from __future__ import annotations

import polars as pl

from tandem.core.contracts import Instrument
from transforms.alliance import (
    alliance_distribution,
    alliance_outcome,
    alliance_outcome_bins,
    clustered_mean,
    therapist_alliance,
)
from transforms.clinical_significance import CATEGORIES
from transforms.effect_sizes import effect_sizes
from transforms.marts.scopes import PERIODS, empty_director_mart, period_rows, scoped
from transforms.nhs_talking_therapies import rates
from transforms.practice import outcome_by_exposure_level, practice_effect, practice_names
from transforms.stats import mean_t_exprs, wilson_exprs
from transforms.therapists import therapist_effects


def _outcome_agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Finished episodes with a change per ``keys`` x instrument: n and category rates."""
    fin = lf.filter(pl.col("finished") & pl.col("change").is_not_null())
    out = fin.group_by([*keys, "instrument"]).agg(
        pl.len().alias("n"),
        pl.col("client_key").n_unique().alias("n_clients"),
        *[(pl.col("category") == c).sum().alias(c) for c in CATEGORIES],
        *mean_t_exprs("improvement", "mean_improvement"),
    )
    return out.with_columns(
        *[e for c in CATEGORIES for e in wilson_exprs(pl.col(c), pl.col("n"), f"{c}_rate")]
    )


def _outcome_rates(outcome: pl.DataFrame) -> pl.DataFrame:
    """Per instrument (clinic, month): finished episodes with a change and the share in each
    category (Wilson); denominators are finished episodes with first and last scores."""
    return scoped(outcome.lazy(), _outcome_agg, [[], ["clinic_id"], ["clinic_id", "month"]],
                   ["clinic_id", "month"])


def _funnel_agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Started -> finished (with a pair of scores; the rates' denominator) -> at caseness at
    start -> recovered, per ``keys`` x instrument. Caseness at start: the first score on the
    clinical side of the instrument's cutoff (ORS below 25; PHQ-9 >= 10; GAD-7 >= 8)."""
    case = pl.col("clinical_at_start").fill_null(False)
    fin = pl.col("finished") & pl.col("change").is_not_null()
    out = lf.filter(pl.col("first_score").is_not_null()).group_by([*keys, "instrument"]).agg(
        pl.len().alias("episodes"),
        pl.col("client_key").n_unique().alias("n_clients"),
        fin.sum().alias("finished"),
        (fin & case).sum().alias("caseness_at_start"),
        (fin & ~case).sum().alias("not_caseness_at_start"),
        (fin & (pl.col("category") == "recovered")).sum().alias("recovered"),
        (fin & case & (pl.col("category") == "recovered")).sum().alias("_rec_case"),
    )
    return out.with_columns(
        *wilson_exprs(pl.col("finished"), pl.col("episodes"), "finished_rate"),
        *wilson_exprs(pl.col("caseness_at_start"), pl.col("finished"), "caseness_rate"),
        *wilson_exprs(pl.col("recovered"), pl.col("finished"), "recovered_rate"),
        *wilson_exprs(pl.col("_rec_case"), pl.col("caseness_at_start"), "recovery_rate"),
    ).drop("_rec_case")


def _funnel(outcome: pl.DataFrame) -> pl.DataFrame:
    """``dir_funnel``: the funnel per outcome instrument, all time (period ``all``) and per
    month / quarter / year of the episode's last session, for all clinics and per clinic."""
    lf = outcome.lazy().filter(pl.col("cutoff").is_not_null())
    overall = scoped(lf, _funnel_agg, [[], ["clinic_id"]], ["clinic_id"]).with_columns(
        pl.lit("all").alias("period"), pl.lit(None, dtype=pl.Date).alias("period_start"))
    periods = period_rows(lf, _funnel_agg, tuple(PERIODS))
    out = pl.concat([overall.select(periods.columns), periods], how="vertical_relaxed")
    return out.sort("instrument", "period", "clinic_id", "period_start", nulls_last=False)


def _activity_agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    return lf.group_by(keys).agg(
        pl.col("client_key").n_unique().alias("active_clients"),
        pl.col("client_key").n_unique().alias("n_clients"),
        (pl.col("session_index") == 1).sum().alias("new_episodes"),
        pl.len().alias("sessions"),
    )


def _activity(sessions: pl.DataFrame) -> pl.DataFrame:
    """``dir_activity``: per clinic (null = all) and calendar month / quarter / year of the
    session: active clients (with a session in the period), new episodes (first session in
    the period), sessions. Exact distinct counts per period, never summed from months."""
    lf = sessions.lazy().with_columns(pl.col("session_date").alias("month"))
    return period_rows(lf, _activity_agg, tuple(PERIODS)).sort(
        "period", "clinic_id", "period_start", nulls_last=False)


def _completeness(sessions: pl.DataFrame) -> pl.DataFrame:
    """``dir_completeness``: per clinic and clinic x therapist (null = all), the exact share of
    sessions with a scored outcome measure and with a scored alliance measure (Wilson)."""
    def agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
        return lf.group_by(keys).agg(
            pl.len().alias("sessions"),
            pl.col("client_key").n_unique().alias("n_clients"),
            pl.col("has_outcome").sum().alias("with_outcome"),
            pl.col("has_alliance").sum().alias("with_alliance"),
        ).with_columns(
            *wilson_exprs(pl.col("with_outcome"), pl.col("sessions"), "outcome_rate"),
            *wilson_exprs(pl.col("with_alliance"), pl.col("sessions"), "alliance_rate"),
        )
    return scoped(sessions.lazy(), agg, [[], ["clinic_id"], ["clinic_id", "therapist_id"]],
                   ["clinic_id", "therapist_id"])


def _subscales(values: pl.DataFrame, instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Mean subscale totals (e.g. WAI-SR task/bond/goal) per clinic and therapist, 95% CI
    clustered by client. ``values``: the long per-administration subscale state."""
    if not any(inst.scoring.subscales for inst in instruments.values()):
        return empty_director_mart()
    lf = values.lazy().sort("clinic_id", "therapist_id", "instrument", "measure",
                            "client_key", "value")
    parts = []
    for keys in (["clinic_id"], ["clinic_id", "therapist_id"]):
        by = [*keys, "instrument", "measure"]
        counts = lf.group_by(by).agg(
            pl.len().alias("n"), pl.col("client_key").n_unique().alias("n_clients")
        )
        mean = clustered_mean(lf, by, "value", "client_key", "mean")
        parts.append(counts.join(mean, on=by, how="left").collect())
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select("clinic_id", "therapist_id", "instrument", "measure",
                      pl.exclude("clinic_id", "therapist_id", "instrument", "measure")
                      ).sort("instrument", "measure", "clinic_id", "therapist_id",
                             nulls_last=False)


def _practice_use(measure: pl.DataFrame, instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Per clinic (and all), clinic x therapist (the episode's main therapist) and clinic x
    month (of the episode's last session): mean share of sessions with each practice over
    episodes (t CI), and the CollaboRATE top-score share over episodes (the practice columns
    are per episode, repeated on each of its measure rows)."""
    data = measure.unique("episode_id", keep="first", maintain_order=True)
    cols = [("all", "exposure")] + [(n, f"practice_{n}") for n in practice_names(instruments)]
    cols.append(("top_score", "top_score_share"))
    parts = []
    for practice_name, col in cols:
        if col not in data.columns or data.schema[col] == pl.Null:
            continue
        def agg(lf: pl.LazyFrame, keys: list[str], col: str = col) -> pl.LazyFrame:
            return lf.filter(pl.col(col).is_not_null()).group_by(keys).agg(
                pl.len().alias("n"),
                pl.col("client_key").n_unique().alias("n_clients"),
                *mean_t_exprs(col, "mean_share"),
            )
        keys = ["clinic_id", "therapist_id", "month"]
        parts.append(scoped(data.lazy(), agg, [[], ["clinic_id"], ["month"],
                                                ["clinic_id", "therapist_id"],
                                                ["clinic_id", "month"]], keys)
                     .with_columns(pl.lit(practice_name).alias("practice")))
    if not parts:
        return empty_director_mart()
    keys = ["clinic_id", "therapist_id", "month", "practice"]
    return pl.concat(parts, how="diagonal_relaxed").select(*keys, pl.exclude(keys))


def _effect_sizes(adjusted: pl.DataFrame) -> pl.DataFrame:
    """``dir_effect_size``: all clinics, per clinic, per clinic x therapist, and per month of the
    episode's last session for all clinics (clinic null) and per clinic."""
    parts = []
    for unit, keys in (("all", []), ("clinic", ["clinic_id"]),
                       ("therapist", ["clinic_id", "therapist_id"]),
                       ("month", ["month"]), ("month", ["clinic_id", "month"])):
        lf = adjusted.lazy()
        if "clinic_id" not in keys:
            lf, keys = lf.with_columns(pl.lit(None, dtype=pl.String).alias("clinic_id")), [
                "clinic_id", *keys]
        parts.append(effect_sizes(lf, keys).collect().with_columns(pl.lit(unit).alias("unit")))
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select("unit", "clinic_id", "therapist_id", "month", "instrument",
                      pl.exclude("unit", "clinic_id", "therapist_id", "month", "instrument"))


def _off_track_rates(track: pl.DataFrame) -> pl.DataFrame:
    """``dir_off_track``: open episodes, those assessable (two scores or more: a trajectory),
    and those off track; the rate is over assessable episodes (docs/outcomes.md)."""
    def agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
        return lf.group_by([*keys, "instrument"]).agg(
            pl.len().alias("open_episodes"),
            pl.col("client_key").n_unique().alias("n_clients"),
            pl.col("assessable").sum().alias("assessable"),
            pl.col("off_track").fill_null(False).sum().alias("off_track"),
        ).with_columns(*wilson_exprs(pl.col("off_track"), pl.col("assessable"),
                                     "off_track_rate"))
    return scoped(track.lazy(), agg, [[], ["clinic_id"], ["clinic_id", "therapist_id"]],
                   ["clinic_id", "therapist_id"])


def director_marts(
    *, sessions: pl.DataFrame, measure: pl.DataFrame, outcome: pl.DataFrame,
    nhs: pl.DataFrame | None, flags: pl.DataFrame, srs: str | None, subscale: pl.DataFrame,
    adjusted: pl.DataFrame, track: pl.DataFrame, instruments: dict[str, Instrument],
) -> dict[str, pl.DataFrame]:
    """Every ``dir_*`` mart, unsuppressed (the composition suppresses them in one place)."""
    marts = {
        "dir_outcomes": _outcome_rates(outcome),
        "dir_outcomes_period": period_rows(outcome.lazy(), _outcome_agg, ("quarter", "year")),
        "dir_funnel": _funnel(outcome),
        "dir_activity": _activity(sessions),
        "dir_completeness": _completeness(sessions),
        "dir_therapist_alliance": (
            therapist_alliance(flags.lazy(), srs).collect() if srs else empty_director_mart()
        ),
        "dir_alliance_subscales": _subscales(subscale, instruments),
        "dir_alliance_outcome": alliance_outcome(outcome, instruments, [None, "clinic_id"]),
        "dir_alliance_distribution": alliance_distribution(flags, measure, instruments),
        "dir_alliance_outcome_bins": alliance_outcome_bins(outcome, instruments,
                                                           [None, "clinic_id"]),
        "dir_practice_use": _practice_use(measure, instruments),
        "dir_practice_effect": practice_effect(outcome, instruments, [None, "clinic_id"]),
        "dir_practice_outcome": outcome_by_exposure_level(outcome, instruments,
                                                          [None, "clinic_id"]),
        "dir_effect_size": _effect_sizes(adjusted),
        "dir_therapist_effect": therapist_effects(adjusted.lazy()).collect(),
        "dir_off_track": _off_track_rates(track),
    }
    if nhs is not None:
        marts["dir_nhs_talking_therapies"] = scoped(
            nhs.lazy(), rates, [[], ["clinic_id"], ["clinic_id", "month"]],
            ["clinic_id", "month"],
        )
        marts["dir_nhs_talking_therapies_period"] = period_rows(
            nhs.lazy(), rates, ("quarter", "year"))
    return marts
