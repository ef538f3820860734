"""NHS Talking Therapies (England) paired-measure metrics, for episodes with PHQ-9 and GAD-7.

Definitions (NHS Talking Therapies for anxiety and depression manual; DOMAIN.md):
- finished a course of treatment: the episode *ended* (closed) with >= 2 attended sessions;
- caseness at a time point: any paired measure at or above its caseness threshold
  (PHQ-9 >= 10 or GAD-7 >= 8; thresholds from the YAML ``caseness``);
- recovered: at caseness at the first measurement and not at caseness at the last;
  recovery rate = recovered / (finished - not at caseness at start);
- reliable improvement: a reliable improvement on at least one measure and no reliable
  deterioration on the other; rate over all finished episodes;
- reliable deterioration: a reliable deterioration on either measure; rate over all finished;
- reliable recovery: recovered and reliable improvement; same denominator as recovery;
- first and last *available* scores (last observation carried forward), and only episodes with
  a *pair* (at least two scores) on every paired measure: with one score there is no change,
  and the episode is in none of the denominators (NHS Talking Therapies measures session by
  session, NHS England service standards; Gyani et al. 2013, Behav Res Ther 51:597-606,
  "at least two outcome scores"). ``episodes.MIN_PAIRED_SCORES``.

``n_clients`` of a rates row counts every client the row describes (the funnel starts at
episodes with both measures paired), so suppression is decided on the same population as the
``episodes`` count it publishes (as in ``dir_funnel``).
"""

from __future__ import annotations

import polars as pl

from tandem.core.contracts import Instrument
from transforms.stats import wilson_exprs

NHS_TT = "NHS_TT"
PAIRED_MEASURES = ("PHQ9", "GAD7")  # the programme's paired outcome measures


def episode_flags(
    classified: pl.LazyFrame,
    instruments: dict[str, Instrument],
    measures: tuple[str, ...] = PAIRED_MEASURES,
) -> pl.LazyFrame:
    """One row per episode with a pair of scores (``last_score`` not null: at least two) on
    every paired measure.

    ``classified`` is the per-episode-and-measure frame with ``reliable_change``, ``open``,
    ``finished``, ``first_score`` and ``last_score``."""
    thresholds = pl.DataFrame(
        {
            "instrument": list(measures),
            "_case_at": [instruments[m].caseness.at_or_above for m in measures],
        },
        schema={"instrument": pl.String, "_case_at": pl.Float64},
    )
    rc = pl.col("reliable_change")
    flags = (
        classified.filter(pl.col("instrument").is_in(list(measures)))
        .filter(pl.col("first_score").is_not_null() & pl.col("last_score").is_not_null())
        .join(thresholds.lazy(), on="instrument", how="inner")
        .group_by("episode_id")
        .agg(
            pl.col("instrument").n_unique().alias("_n_measures"),
            pl.col("clinic_id", "client_key", "therapist_id", "sessions", "open", "finished",
                   "month").first(),
            pl.col("first_date").min(),
            pl.col("last_date").max(),
            (pl.col("first_score") >= pl.col("_case_at")).any().alias("caseness_start"),
            (pl.col("last_score") >= pl.col("_case_at")).any().alias("caseness_end"),
            (rc == "improved").any().alias("_any_improved"),
            (rc == "deteriorated").any().alias("reliable_deterioration"),
        )
        .filter(pl.col("_n_measures") == len(measures))
    )
    return flags.with_columns(
        (pl.col("finished") & ~pl.col("open")).alias("finished_treatment"),
        (pl.col("caseness_start") & ~pl.col("caseness_end")).alias("recovered"),
        (pl.col("_any_improved") & ~pl.col("reliable_deterioration"))
        .alias("reliable_improvement"),
    ).with_columns(
        (pl.col("recovered") & pl.col("reliable_improvement")).alias("reliable_recovery"),
        pl.lit(NHS_TT).alias("instrument"),
    ).drop("_n_measures", "_any_improved")


def rates(flags: pl.LazyFrame | pl.DataFrame, by: list[str]) -> pl.LazyFrame:
    """The funnel and the four rates with their exact denominators and Wilson intervals.

    Counts: episodes (with both measures) -> finished -> at caseness at start -> recovered."""
    fin = pl.col("finished_treatment")
    case_fin = fin & pl.col("caseness_start")
    out = flags.lazy().group_by(by).agg(
        pl.len().alias("episodes"),
        pl.col("client_key").n_unique().alias("n_clients"),
        fin.sum().alias("finished"),
        (fin & ~pl.col("caseness_start")).sum().alias("not_caseness_at_start"),
        case_fin.sum().alias("caseness_at_start"),
        (case_fin & pl.col("recovered")).sum().alias("recovered"),
        (fin & pl.col("reliable_improvement")).sum().alias("reliable_improvement"),
        (fin & pl.col("reliable_deterioration")).sum().alias("reliable_deterioration"),
        (case_fin & pl.col("reliable_recovery")).sum().alias("reliable_recovery"),
    )
    recovery_denominator = pl.col("finished") - pl.col("not_caseness_at_start")
    return out.with_columns(
        *wilson_exprs(pl.col("recovered"), recovery_denominator, "recovery_rate"),
        *wilson_exprs(pl.col("reliable_improvement"), pl.col("finished"),
                      "reliable_improvement_rate"),
        *wilson_exprs(pl.col("reliable_deterioration"), pl.col("finished"),
                      "reliable_deterioration_rate"),
        *wilson_exprs(pl.col("reliable_recovery"), recovery_denominator,
                      "reliable_recovery_rate"),
    )
