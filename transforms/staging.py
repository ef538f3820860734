"""Staging: the canonical model's rows, trimmed and typed, raw values kept beside them.

Every source reader produces the canonical long shape as text (one row per answered
item, with its ``source_row``). Staging trims, turns empty strings into missing values
and parses types into extra columns *without* dropping anything: the raw text stays for
the quarantine's reasons, and a value that does not parse becomes null in its parsed
column, where a data-contract rule catches it.
"""

from __future__ import annotations

import polars as pl

CANONICAL_COLUMNS = [
    "clinic_id",
    "client_id",
    "therapist_id",
    "session_date",
    "session_number",
    "instrument",
    "item",
    "score",
]

# The identity of one answered item; a second row with this key is a duplicate or a conflict.
ANSWER_KEY = ["clinic_id", "client_key", "instrument", "session_number_int", "item_int"]


def stage_rows(raw: pl.DataFrame, date_format: str) -> pl.DataFrame:
    """Trim text, then parse dates, integers and scores into ``*_parsed``/``*_int``/``*_num``.

    ``raw`` holds CANONICAL_COLUMNS as text, with ``client_key`` instead of ``client_id``
    (pseudonymised by the flow before anything else sees it), and ``source_row``.
    """
    text_cols = [c for c in raw.columns if c != "source_row" and raw.schema[c] == pl.String]
    trimmed = raw.with_columns(
        [
            pl.when(pl.col(c).str.strip_chars().str.len_chars() == 0)
            .then(None)
            .otherwise(pl.col(c).str.strip_chars())
            .alias(c)
            for c in text_cols
        ]
    )
    score = pl.col("score").cast(pl.Float64, strict=False)
    session_number = pl.col("session_number").cast(pl.Int32, strict=False)
    return trimmed.with_columns(
        session_date_parsed=pl.col("session_date").str.strptime(
            pl.Date, format=date_format, strict=False, exact=True
        ),
        session_number_int=pl.when(session_number >= 1).then(session_number),
        item_int=pl.col("item").cast(pl.Int16, strict=False),
        # "nan" and "inf" parse as floats but are not answers.
        score_num=pl.when(score.is_finite()).then(score),
    )


def split_exact_duplicates(staged: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows repeated to the letter load once: keep the first, count the rest as duplicates."""
    compare = [c for c in staged.columns if c != "source_row"]
    first = pl.col("source_row").min().over(compare, order_by=None)
    marked = staged.with_columns(_is_dup=pl.col("source_row") != first)
    return (
        marked.filter(~pl.col("_is_dup")).drop("_is_dup"),
        marked.filter(pl.col("_is_dup")).drop("_is_dup"),
    )


def to_response_rows(valid: pl.DataFrame, batch_id: int) -> pl.DataFrame:
    """The warehouse's ``response`` shape for rows that passed every rule."""
    return valid.select(
        pl.col("clinic_id"),
        pl.col("client_key"),
        pl.col("therapist_id"),
        pl.col("session_date_parsed").alias("session_date"),
        pl.col("session_number_int").alias("session_number"),
        pl.col("instrument"),
        pl.col("item_int").alias("item"),
        pl.col("score_num").alias("score"),
        pl.lit(batch_id, pl.Int64).alias("batch_id"),
        pl.col("source_row").cast(pl.Int64),
    )
