"""Staging: the canonical model's rows, trimmed and typed, raw values kept beside them.

Every source reader produces the canonical long shape as text (one row per answered
item, or per reported instrument total, with where it came from). Staging trims, turns
empty strings into missing values and parses types into extra columns *without*
dropping anything: the raw text stays for the quarantine's reasons, and a value that
does not parse becomes null in its parsed column, where a data-contract rule catches it.

Columns a reader returns (all text except ``source_row``):

- ``CANONICAL_COLUMNS``; ``item`` is the item number, or ``total`` for an instrument
  total the source reports itself (a FHIR Observation, a QuestionnaireResponse score item);
- ``source_row`` (Int64): the record's line (CSV, NDJSON) or sheet row (Excel);
- ``source_ref`` (optional): how a person finds the record, e.g. ``Mar 2026!14``;
  defaults to ``source_row`` as text;
- ``reader_issue`` (optional): why the reader could not map this record faithfully
  (an unknown answer code, a status the contract does not accept); a rule quarantines it.
"""

from __future__ import annotations

import polars as pl

from tandem.core.contracts import Instrument

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
OPTIONAL_COLUMNS = ["source_ref", "reader_issue"]
TOTAL_ITEM = "total"
ROW_ID = "row_id"

# The identity of one answered item; a second row with this key is a duplicate or a conflict.
# A reported total has item_int null and is told apart by ``kind``.
ANSWER_KEY = ["clinic_id", "client_key", "instrument", "session_number_int", "kind", "item_int"]
# The quarantine unit: one administration (instrument) of one source record. A record that
# carries a whole questionnaire is kept or set aside whole, never half-loaded.
UNIT_KEY = ["source_ref", "instrument"]
# Administration of an instrument to a client at a session.
ADMIN_KEY = ["clinic_id", "client_key", "instrument", "session_number_int"]
# Columns that say where a row came from rather than what it says (ignored by duplicates).
_LINEAGE = {"source_row", "source_ref", ROW_ID}


def complete_reader_frame(raw: pl.DataFrame) -> pl.DataFrame:
    """Add the optional reader columns a reader left out, so every path stages alike."""
    out = raw
    if "source_ref" not in out.columns:
        out = out.with_columns(source_ref=pl.col("source_row").cast(pl.String))
    if "reader_issue" not in out.columns:
        out = out.with_columns(reader_issue=pl.lit(None, pl.String))
    return out.with_columns(pl.col("source_row").cast(pl.Int64))


def stage_rows(raw: pl.DataFrame, date_format: str) -> pl.DataFrame:
    """Trim text, then parse dates, integers and scores into ``*_parsed``/``*_int``/``*_num``.

    ``raw`` holds CANONICAL_COLUMNS as text, with ``client_key`` instead of ``client_id``
    (pseudonymised by the flow before anything else sees it), and ``source_row``.
    """
    raw = complete_reader_frame(raw)
    text_cols = [
        c for c in raw.columns
        if c not in ("source_row", "source_ref", "reader_issue") and raw.schema[c] == pl.String
    ]
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
    is_total = pl.col("item").str.to_lowercase() == TOTAL_ITEM
    return trimmed.with_row_index(ROW_ID).with_columns(
        pl.col(ROW_ID).cast(pl.Int64),
        kind=pl.when(is_total).then(pl.lit("total")).otherwise(pl.lit("item")),
        # A date outside 1900-2199 (e.g. 0000-05-28) is no session date: null, so the
        # contract quarantines it (and nothing downstream overflows a nanosecond timestamp).
        session_date_parsed=pl.col("session_date")
        .str.strptime(pl.Date, format=date_format, strict=False, exact=True)
        .pipe(lambda d: pl.when(d.dt.year().is_between(1900, 2199)).then(d)),
        session_number_int=pl.when(session_number >= 1).then(session_number),
        item_int=pl.when(is_total.fill_null(False)).then(None).otherwise(
            pl.col("item").cast(pl.Int16, strict=False)
        ),
        # "nan" and "inf" parse as floats but are not answers.
        score_num=pl.when(score.is_finite()).then(score),
    )


def add_contract_columns(staged: pl.DataFrame,
                         instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Give each row its instrument's limits and the checks the contract rules read.

    Per-row limits (``n_items``, ``item_min``/``item_max`` for items, ``total_min``/
    ``total_max`` for totals, from the instrument definitions) let one vectorised
    expectation cover every instrument, instead of one filtered expectation each. The
    ``*_invalid`` columns hold the raw text of a value that is present but does not
    parse; ``items_total`` and ``total_consistent`` compare a reported total with the
    same administration's items in this batch (when all are present and in range).
    """
    spec = pl.DataFrame(
        {
            "instrument": list(instruments),
            "_n": [i.n_items for i in instruments.values()],
            "_lo": [float(i.item_range.min) for i in instruments.values()],
            "_hi": [float(i.item_range.max) for i in instruments.values()],
            "_tlo": [float(i.scoring.total_range.min) for i in instruments.values()],
            "_thi": [float(i.scoring.total_range.max) for i in instruments.values()],
            "_mean": [i.scoring.method == "mean" for i in instruments.values()],
        },
        schema={"instrument": pl.String, "_n": pl.Int16, "_lo": pl.Float64,
                "_hi": pl.Float64, "_tlo": pl.Float64, "_thi": pl.Float64,
                "_mean": pl.Boolean},
    )
    item = pl.col("kind") == "item"
    total = pl.col("kind") == "total"
    out = staged.join(spec, on="instrument", how="left", maintain_order="left").with_columns(
        n_items=pl.when(item).then(pl.col("_n")),
        item_min=pl.when(item).then(pl.col("_lo")),
        item_max=pl.when(item).then(pl.col("_hi")),
        total_min=pl.when(total).then(pl.col("_tlo")),
        total_max=pl.when(total).then(pl.col("_thi")),
        session_date_invalid=pl.when(pl.col("session_date_parsed").is_null())
        .then(pl.col("session_date")),
        session_number_invalid=pl.when(pl.col("session_number_int").is_null())
        .then(pl.col("session_number")),
        item_invalid=pl.when(item & pl.col("item_int").is_null()).then(pl.col("item")),
        score_invalid=pl.when(pl.col("score_num").is_null()).then(pl.col("score")),
    )
    items = (
        out.filter(item & pl.col("item_int").is_between(1, pl.col("_n"))
                   & pl.col("score_num").is_between(pl.col("_lo"), pl.col("_hi")))
        .group_by(ADMIN_KEY)
        .agg(
            _count=pl.col("item_int").n_unique(),
            _rows=pl.len(),
            _sum=pl.col("score_num").sum(),
            _n=pl.col("_n").first(),
            _is_mean=pl.col("_mean").first(),
        )
        .filter((pl.col("_count") == pl.col("_n")) & (pl.col("_rows") == pl.col("_n")))
        .select(
            *ADMIN_KEY,
            pl.lit("total").alias("kind"),
            items_total=pl.when(pl.col("_is_mean"))
            .then(pl.col("_sum") / pl.col("_n"))
            .otherwise(pl.col("_sum")),
        )
    )
    out = out.join(items, on=[*ADMIN_KEY, "kind"], how="left", nulls_equal=False,
                   maintain_order="left")
    return out.drop("_n", "_lo", "_hi", "_tlo", "_thi", "_mean").with_columns(
        total_consistent=pl.when(pl.col("items_total").is_not_null()
                                 & pl.col("score_num").is_not_null())
        .then((pl.col("items_total") - pl.col("score_num")).abs() < 0.005)
    )


def split_exact_duplicates(staged: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows repeated to the letter load once: keep the first, count the rest as duplicates."""
    # Rows are in row-id order, so the first occurrence is the one kept. is_first_distinct
    # hashes each row's columns once (and compares equal hashes exactly): no window over
    # every column.
    compare = [c for c in staged.columns if c not in _LINEAGE]
    marked = staged.with_columns(
        _is_dup=~pl.struct(compare).is_first_distinct()
        if staged[ROW_ID].is_sorted() else pl.col(ROW_ID) != pl.col(ROW_ID).min()
        .over(compare, order_by=None))
    if not marked["_is_dup"].any():  # the usual case: no copy of the rows
        return staged, staged.clear()
    return (
        marked.filter(~pl.col("_is_dup")).drop("_is_dup"),
        marked.filter(pl.col("_is_dup")).drop("_is_dup"),
    )


def to_response_rows(valid: pl.DataFrame, batch_id: int) -> pl.DataFrame:
    """The warehouse's ``response`` shape for item rows that passed every rule."""
    return valid.filter(pl.col("kind") == "item").select(
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
        pl.col("source_ref"),
    )


def to_reported_total_rows(valid: pl.DataFrame, batch_id: int) -> pl.DataFrame:
    """The warehouse's ``reported_total`` shape for totals that passed every rule."""
    return valid.filter(pl.col("kind") == "total").select(
        pl.col("clinic_id"),
        pl.col("client_key"),
        pl.col("therapist_id"),
        pl.col("session_date_parsed").alias("session_date"),
        pl.col("session_number_int").alias("session_number"),
        pl.col("instrument"),
        pl.col("score_num").alias("total"),
        pl.col("items_total"),
        pl.lit(batch_id, pl.Int64).alias("batch_id"),
        pl.col("source_row").cast(pl.Int64),
        pl.col("source_ref"),
    )
