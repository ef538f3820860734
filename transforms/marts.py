"""Build every published mart from the ``response`` table: the one entry point.

Two stages (docs/aggregate.md): ``transforms.client_state.client_state`` (per client, kept in
the warehouse by the ``aggregate`` flow and recomputed only for clients whose rows changed)
and :func:`population_marts` (from that state). ``build_marts(responses, instruments,
params)`` runs both at once. Each returned frame is published as a table of that name.
Naming convention (docs/marts.md): marts whose name starts with ``dir_`` are
director-facing aggregates and pass through small-cell suppression here, in one place
(``suppression.suppress_marts``); the others are row-level marts for the quality team
(episode_id, client_key pseudonym, batch lineage), not suppressed.
Grouping columns set to null in a ``dir_`` mart mean "all" (e.g. clinic_id null = all clinics).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from tandem.contracts import Instrument
from transforms.alliance import (
    alliance_distribution,
    alliance_instruments,
    alliance_outcome,
    alliance_outcome_bins,
    clustered_mean,
    therapist_alliance,
)
from transforms.client_state import ClientState, client_state
from transforms.effect_sizes import effect_sizes, with_adjusted_improvement
from transforms.episodes import open_expr
from transforms.nhs_talking_therapies import NHS_TT, PAIRED_MEASURES, episode_flags, rates
from transforms.off_track import DEFAULT_Z, flag_off_track, trajectory_model
from transforms.practice import (
    outcome_by_exposure_level,
    practice_effect,
    practice_names,
)
from transforms.stats import mean_t_exprs, wilson_exprs
from transforms.suppression import suppress_marts
from transforms.therapists import therapist_effects

CATEGORIES = ("recovered", "improved", "unchanged", "deteriorated")
# Periods a director can filter by (docs/marts.md): rows per calendar month, quarter and year
# of the episode's last session, so a suppressed cell never has to be summed from months.
PERIODS = {"month": "1mo", "quarter": "1q", "year": "1y"}


@dataclass(frozen=True)
class MartParams:
    """Configurable rules (defaults: settings ``episode_gap_days``, ``episode_open_days``,
    ``min_cell_size``). ``as_of`` decides which episodes are open; None = last session date."""

    gap_days: int = 90
    open_days: int = 60
    min_cell_size: int = 10
    as_of: dt.date | None = None
    cutoff_population: str | None = None  # ORS: adult (default) / adolescent / child
    off_track_z: float = DEFAULT_Z
    nhs_tt_measures: tuple[str, ...] = PAIRED_MEASURES


def build_marts(
    responses: pl.DataFrame, instruments: dict[str, Instrument], params: MartParams
) -> dict[str, pl.DataFrame]:
    """All marts by name. Pure: frames in, frames out. The one-shot composition of the two
    stages the incremental ``aggregate`` flow runs separately (one code path)."""
    state = client_state(responses, instruments, params.gap_days, params.cutoff_population)
    return population_marts(state, instruments, params)


def population_marts(
    state: ClientState, instruments: dict[str, Instrument], params: MartParams
) -> dict[str, pl.DataFrame]:
    """Stage 2: every mart from the per-client state (small: about one row per session or
    episode). Regressions, rates, ``open`` (as of the run date) and suppression live here.

    Inputs are sorted first, so the result does not depend on the order the state rows were
    stored in (a state updated client by client gives the same marts as a full rebuild)."""
    sessions = state.session.sort("clinic_id", "client_key", "session_date", "session_number")
    as_of = params.as_of or _last_date(sessions)
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]

    # ``open`` depends on the run date, so it is added here, in its documented place.
    cols = state.measure.columns
    at = cols.index("finished") + 1
    measure = (
        state.measure.sort("episode_id", "instrument")
        .with_columns(open_expr(as_of, params.open_days, "end_date").alias("open"))
        .select(*cols[:at], "open", *cols[at:])
    )
    outcome = measure.filter(pl.col("instrument").is_in(outcomes))

    nhs_ok = all(m in instruments and instruments[m].caseness for m in params.nhs_tt_measures)
    nhs = (
        episode_flags(measure.lazy(), instruments, params.nhs_tt_measures).collect()
        .sort("episode_id")
        if nhs_ok else pl.DataFrame()
    )

    flags = state.alliance.sort("episode_id", "instrument", "session_date", "session_number")
    srs = next((c for c in alliance_instruments(instruments)
                if instruments[c].alliance_flags is not None), None)
    adjusted = with_adjusted_improvement(outcome.lazy()).collect()
    model = trajectory_model(
        state.trajectory.lazy().select("instrument", "k", "intake", "so_far")
        .sort("instrument", "k", "intake", "so_far")
    )
    track = flag_off_track(
        measure.lazy(), state.track_latest.lazy().drop("clinic_id", "client_key"), model,
        outcomes, params.off_track_z,
    ).collect().sort("episode_id", "instrument")

    marts: dict[str, pl.DataFrame] = {
        # Row-level (quality team), not suppressed.
        "episode_session": sessions.select(
            "episode_id", "clinic_id", "client_key", "session_date", "session_number",
            "therapist_id", "session_index", "has_outcome", "has_alliance", "batch_ids",
        ),
        "episode_measure": measure,
        "episode_outcome": episode_outcome(outcome, nhs),
        "session_alliance": flags.select(
            "episode_id", "clinic_id", "client_key", "therapist_id", "session_date",
            "session_number", "instrument", "total", "change_from_previous", "low_alliance",
            "alliance_drop", "batch_ids",
        ),
        "off_track_episode": track,
        # Director-facing, suppressed below.
        "dir_outcomes": _outcome_rates(outcome),
        "dir_outcomes_period": _period_rows(outcome.lazy(), _outcome_agg, ("quarter", "year")),
        "dir_funnel": _funnel(outcome),
        "dir_activity": _activity(sessions),
        "dir_completeness": _completeness(sessions),
        "dir_therapist_alliance": (
            therapist_alliance(flags.lazy(), srs).collect() if srs else _empty_dir()
        ),
        "dir_alliance_subscales": _subscales(state.subscale, instruments),
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
    if nhs_ok:
        marts["dir_nhs_talking_therapies"] = _scoped(
            nhs.lazy(), rates, [[], ["clinic_id"], ["clinic_id", "month"]],
            ["clinic_id", "month"],
        )
        marts["dir_nhs_talking_therapies_period"] = _period_rows(
            nhs.lazy(), rates, ("quarter", "year"))
    marts = suppress_marts(marts, params.min_cell_size)
    # Milestone-1 name, kept as an alias of the suppressed director mart.
    marts["therapist_alliance"] = marts["dir_therapist_alliance"]
    return marts


EXPORT_COLUMNS = [
    "clinic_id", "client_key", "therapist_id", "episode_id", "instrument", "first_date",
    "last_date", "sessions", "first_score", "last_score", "change", "reliable_change",
    "crossed_cutoff", "category", "caseness_start", "caseness_end", "finished_treatment",
    "recovered", "reliable_improvement", "reliable_deterioration", "reliable_recovery",
    "open", "month",
]


def episode_outcome(outcome: pl.DataFrame, nhs: pl.DataFrame) -> pl.DataFrame:
    """The export's rows: one per episode and outcome measure, plus one ``NHS_TT`` row per
    episode with both paired measures (row-level, for quality teams)."""
    rows = [outcome.with_columns(
        (pl.col("finished") & ~pl.col("open")).alias("finished_treatment"),
    )]
    if nhs.height or nhs.width:
        rows.append(nhs.with_columns(pl.lit(NHS_TT).alias("instrument")))
    out = pl.concat(
        [r.select([c for c in EXPORT_COLUMNS if c in r.columns]) for r in rows],
        how="diagonal_relaxed",
    )
    return out.select([pl.col(c) if c in out.columns else pl.lit(None).alias(c)
                       for c in EXPORT_COLUMNS]).sort("episode_id", "instrument")


def _scoped(
    lf: pl.LazyFrame, fn, key_sets: list[list[str]], all_keys: list[str]
) -> pl.DataFrame:
    """Run an aggregate for several groupings; missing grouping columns are null (= all)."""
    parts = []
    for keys in key_sets:
        part = fn(lf, keys).collect() if keys else fn(
            lf.with_columns(pl.lit(1).alias("_all")), ["_all"]).collect().drop("_all")
        parts.append(part)
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select(*all_keys, pl.exclude(all_keys)).sort(all_keys, nulls_last=False)


def _period_rows(
    lf: pl.LazyFrame, fn, periods: tuple[str, ...], date_col: str = "month"
) -> pl.DataFrame:
    """``fn`` per period (month / quarter / year of ``date_col``) for all clinics and per
    clinic: columns ``clinic_id`` (null = all), ``period``, ``period_start``, then fn's."""
    parts = []
    for period in periods:
        data = lf.with_columns(pl.col(date_col).dt.truncate(PERIODS[period])
                               .alias("period_start"))
        part = _scoped(data, fn, [["period_start"], ["clinic_id", "period_start"]],
                       ["clinic_id", "period_start"])
        parts.append(part.with_columns(pl.lit(period).alias("period")))
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select("clinic_id", "period", "period_start",
                      pl.exclude("clinic_id", "period", "period_start"))


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
    return _scoped(outcome.lazy(), _outcome_agg, [[], ["clinic_id"], ["clinic_id", "month"]],
                   ["clinic_id", "month"])


def _funnel_agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """Started -> finished (with a change; the rates' denominator) -> at caseness at start
    -> recovered, per ``keys`` x instrument. Caseness at start: the first score on the
    clinical side of the instrument's cutoff (ORS below 25; PHQ-9 >= 10; GAD-7 >= 8)."""
    case = (pl.when(pl.col("higher_is_better")).then(pl.col("first_score") < pl.col("cutoff"))
            .otherwise(pl.col("first_score") >= pl.col("cutoff")))
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
    overall = _scoped(lf, _funnel_agg, [[], ["clinic_id"]], ["clinic_id"]).with_columns(
        pl.lit("all").alias("period"), pl.lit(None, dtype=pl.Date).alias("period_start"))
    periods = _period_rows(lf, _funnel_agg, tuple(PERIODS))
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
    return _period_rows(lf, _activity_agg, tuple(PERIODS)).sort(
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
    return _scoped(sessions.lazy(), agg, [[], ["clinic_id"], ["clinic_id", "therapist_id"]],
                   ["clinic_id", "therapist_id"])


def _subscales(values: pl.DataFrame, instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Mean subscale totals (e.g. WAI-SR task/bond/goal) per clinic and therapist, 95% CI
    clustered by client. ``values``: the long per-administration subscale state."""
    if not any(inst.scoring.subscales for inst in instruments.values()):
        return _empty_dir()
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
        parts.append(_scoped(data.lazy(), agg, [[], ["clinic_id"], ["month"],
                                                ["clinic_id", "therapist_id"],
                                                ["clinic_id", "month"]], keys)
                     .with_columns(pl.lit(practice_name).alias("practice")))
    if not parts:
        return _empty_dir()
    keys = ["clinic_id", "therapist_id", "month", "practice"]
    return pl.concat(parts, how="diagonal_relaxed").select(*keys, pl.exclude(keys))


def _effect_sizes(adjusted: pl.DataFrame) -> pl.DataFrame:
    parts = []
    for unit, keys in (("all", []), ("clinic", ["clinic_id"]),
                       ("therapist", ["clinic_id", "therapist_id"]),
                       ("month", ["clinic_id", "month"])):
        lf = adjusted.lazy()
        if not keys:
            lf, keys = lf.with_columns(pl.lit(None, dtype=pl.String).alias("clinic_id")), [
                "clinic_id"]
        parts.append(effect_sizes(lf, keys).collect().with_columns(pl.lit(unit).alias("unit")))
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select("unit", "clinic_id", "therapist_id", "month", "instrument",
                      pl.exclude("unit", "clinic_id", "therapist_id", "month", "instrument"))


def _off_track_rates(track: pl.DataFrame) -> pl.DataFrame:
    def agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
        return lf.group_by([*keys, "instrument"]).agg(
            pl.len().alias("open_episodes"),
            pl.col("client_key").n_unique().alias("n_clients"),
            pl.col("off_track").sum().alias("off_track"),
        ).with_columns(*wilson_exprs(pl.col("off_track"), pl.col("open_episodes"),
                                     "off_track_rate"))
    return _scoped(track.lazy(), agg, [[], ["clinic_id"], ["clinic_id", "therapist_id"]],
                   ["clinic_id", "therapist_id"])


def _empty_dir() -> pl.DataFrame:
    return pl.DataFrame(schema={"n_clients": pl.Int64})


def _last_date(sessions: pl.DataFrame) -> dt.date:
    value = sessions.select(pl.col("session_date").max()).item() if sessions.height else None
    return value or dt.date(1970, 1, 1)
