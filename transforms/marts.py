"""Build every published mart from the ``response`` table: the one entry point.

The ``aggregate`` flow calls ``build_marts(responses, instruments, params)`` and publishes
each returned frame as a table of that name. Naming convention (docs/marts.md): marts whose
name starts with ``dir_`` are director-facing aggregates and pass through small-cell
suppression here, in one place (``suppression.suppress_marts``); the others are row-level marts
for the quality team (episode_id, client_key pseudonym, batch lineage), not suppressed.
Grouping columns set to null in a ``dir_`` mart mean "all" (e.g. clinic_id null = all clinics).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from tandem.contracts import Instrument
from transforms.alliance import (
    alliance_instruments,
    alliance_outcome,
    clustered_mean,
    early_alliance,
    session_alliance_flags,
    therapist_alliance,
)
from transforms.clinical_significance import classify_clinical_significance
from transforms.effect_sizes import effect_sizes, with_adjusted_improvement
from transforms.episodes import (
    SESSION_KEYS,
    assign_episodes_lazy,
    attach_episodes,
    episode_measures_lazy,
)
from transforms.nhs_talking_therapies import NHS_TT, PAIRED_MEASURES, episode_flags, rates
from transforms.off_track import DEFAULT_Z, off_track
from transforms.practice import (
    checklist_instruments,
    episode_practice,
    outcome_by_exposure_level,
    practice_effect,
    practice_names,
)
from transforms.reliable_change import classify_reliable_change
from transforms.scoring import item_values, score_administrations_lazy, subscale_column
from transforms.stats import mean_t_exprs, wilson_exprs
from transforms.suppression import suppress_marts
from transforms.therapists import therapist_effects

CATEGORIES = ("recovered", "improved", "unchanged", "deteriorated")


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
    """All marts by name. Pure: frames in, frames out."""
    responses = responses.filter(pl.col("instrument").is_in(list(instruments)))
    as_of = params.as_of or _last_date(responses)
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]

    admins = score_administrations_lazy(responses, instruments).collect()
    sessions = assign_episodes_lazy(admins, params.gap_days, as_of, params.open_days).collect()
    admins_ep = attach_episodes(admins, sessions).collect()
    classified = classify_clinical_significance(
        classify_reliable_change(episode_measures_lazy(admins, sessions), instruments),
        instruments,
        params.cutoff_population,
    ).collect()

    # Per-episode alliance and practice exposure, joined onto every measure row.
    early = early_alliance(admins_ep.lazy(), instruments).collect()
    checklist = checklist_instruments(instruments)
    items_ep = (
        pl.concat([item_values(responses, instruments, c) for c in checklist])
        .join(sessions.lazy().select(*SESSION_KEYS, "episode_id"), on=SESSION_KEYS)
        if checklist
        else pl.LazyFrame(schema={"episode_id": pl.String, "item_name": pl.String,
                                  "score": pl.Float64, "session_date": pl.Date,
                                  "session_number": pl.Int32})
    )
    practice = episode_practice(items_ep, admins_ep.lazy(), instruments).collect()
    measure = (
        classified.join(early, on="episode_id", how="left")
        .join(practice, on="episode_id", how="left")
    )
    outcome = measure.filter(pl.col("instrument").is_in(outcomes))

    nhs_ok = all(m in instruments and instruments[m].caseness for m in params.nhs_tt_measures)
    nhs = (
        episode_flags(classified.lazy(), instruments, params.nhs_tt_measures).collect()
        if nhs_ok else pl.DataFrame()
    )

    flags = session_alliance_flags(admins_ep.lazy(), instruments).collect()
    srs = next((c for c in alliance_instruments(instruments)
                if instruments[c].alliance_flags is not None), None)
    adjusted = with_adjusted_improvement(outcome.lazy()).collect()
    track = off_track(admins_ep.lazy(), classified.lazy(), outcomes, params.off_track_z).collect()

    marts: dict[str, pl.DataFrame] = {
        # Row-level (quality team), not suppressed.
        "episode_session": sessions.select(
            "episode_id", "clinic_id", "client_key", "session_date", "session_number",
            "therapist_id", "session_index", "batch_ids",
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
        "dir_therapist_alliance": (
            therapist_alliance(flags.lazy(), srs).collect() if srs else _empty_dir()
        ),
        "dir_alliance_subscales": _subscales(admins_ep, instruments),
        "dir_alliance_outcome": alliance_outcome(outcome, instruments, [None, "clinic_id"]),
        "dir_practice_use": _practice_use(practice, measure, instruments),
        "dir_practice_effect": practice_effect(outcome, instruments, [None, "clinic_id"]),
        "dir_practice_outcome": outcome_by_exposure_level(outcome, instruments),
        "dir_effect_size": _effect_sizes(adjusted),
        "dir_therapist_effect": therapist_effects(adjusted.lazy()).collect(),
        "dir_off_track": _off_track_rates(track),
    }
    if nhs_ok:
        marts["dir_nhs_talking_therapies"] = _scoped(
            nhs.lazy(), rates, [[], ["clinic_id"], ["clinic_id", "month"]],
            ["clinic_id", "month"],
        )
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


def _outcome_rates(outcome: pl.DataFrame) -> pl.DataFrame:
    """Per instrument (clinic, month): finished episodes with a change and the share in each
    category (Wilson); denominators are finished episodes with first and last scores."""
    def agg(lf: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
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
    return _scoped(outcome.lazy(), agg, [[], ["clinic_id"], ["clinic_id", "month"]],
                   ["clinic_id", "month"])


def _subscales(admins_ep: pl.DataFrame, instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Mean subscale totals (e.g. WAI-SR task/bond/goal) per clinic and therapist, 95% CI
    clustered by client."""
    parts = []
    for code, inst in instruments.items():
        for name in inst.scoring.subscales:
            col = subscale_column(name)
            lf = admins_ep.lazy().filter(
                (pl.col("instrument") == code) & pl.col(col).is_not_null()
            )
            for keys in (["clinic_id"], ["clinic_id", "therapist_id"]):
                counts = lf.group_by(keys).agg(
                    pl.len().alias("n"), pl.col("client_key").n_unique().alias("n_clients")
                )
                mean = clustered_mean(lf, keys, col, "client_key", "mean")
                parts.append(
                    counts.join(mean, on=keys, how="left").with_columns(
                        pl.lit(code).alias("instrument"), pl.lit(name).alias("measure")
                    ).collect()
                )
    if not parts:
        return _empty_dir()
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select("clinic_id", "therapist_id", "instrument", "measure",
                      pl.exclude("clinic_id", "therapist_id", "instrument", "measure"))


def _practice_use(
    practice: pl.DataFrame, measure: pl.DataFrame, instruments: dict[str, Instrument]
) -> pl.DataFrame:
    """Per clinic (and all): mean share of sessions with each practice over episodes (t CI),
    and the CollaboRATE top-score share over episodes."""
    eps = measure.select("episode_id", "clinic_id", "client_key").unique("episode_id")
    data = practice.join(eps, on="episode_id", how="inner")
    cols = [("all", "exposure")] + [(n, f"practice_{n}") for n in practice_names(instruments)]
    cols.append(("top_score", "top_score_share"))
    parts = []
    for practice_name, col in cols:
        if col not in data.columns:
            continue
        def agg(lf: pl.LazyFrame, keys: list[str], col: str = col) -> pl.LazyFrame:
            return lf.filter(pl.col(col).is_not_null()).group_by(keys).agg(
                pl.len().alias("n"),
                pl.col("client_key").n_unique().alias("n_clients"),
                *mean_t_exprs(col, "mean_share"),
            )
        parts.append(_scoped(data.lazy(), agg, [[], ["clinic_id"]], ["clinic_id"])
                     .with_columns(pl.lit(practice_name).alias("practice")))
    if not parts:
        return _empty_dir()
    return pl.concat(parts, how="diagonal_relaxed").select(
        "clinic_id", "practice", pl.exclude("clinic_id", "practice"))


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


def _last_date(responses: pl.DataFrame) -> dt.date:
    value = responses.select(pl.col("session_date").max()).item() if responses.height else None
    return value or dt.date(1970, 1, 1)
