"""The export marts: ``episode_outcome``, one row per episode and outcome measure plus an
``NHS_TT`` row per episode with both paired measures; the source of ``tandem export``."""

from __future__ import annotations

import polars as pl

from transforms.nhs_talking_therapies import NHS_TT

EXPORT_COLUMNS = [
    "clinic_id", "client_key", "therapist_id", "episode_id", "instrument", "first_date",
    "last_date", "sessions", "n_scores", "paired", "first_score", "last_score", "change",
    "change_method", "change_index", "reliable_change", "cutoff", "crossed_cutoff", "category",
    "caseness_start", "caseness_end", "finished_treatment", "recovered",
    "reliable_improvement", "reliable_deterioration", "reliable_recovery", "open", "month",
]


def episode_outcome(outcome: pl.DataFrame, nhs: pl.DataFrame) -> pl.DataFrame:
    """The export's rows: one per episode and outcome measure, plus one ``NHS_TT`` row per
    episode with both paired measures (row-level, for quality teams)."""
    rows = [outcome.with_columns(
        (pl.col("finished") & ~pl.col("open")).alias("finished_treatment"),
    )]
    if nhs.height or nhs.width:  # every NHS_TT row has a pair on both measures
        rows.append(nhs.with_columns(pl.lit(NHS_TT).alias("instrument"),
                                     pl.lit(True).alias("paired")))
    out = pl.concat(
        [r.select([c for c in EXPORT_COLUMNS if c in r.columns]) for r in rows],
        how="diagonal_relaxed",
    )
    return out.select([pl.col(c) if c in out.columns else pl.lit(None).alias(c)
                       for c in EXPORT_COLUMNS]).sort("episode_id", "instrument")
