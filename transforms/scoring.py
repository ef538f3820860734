"""Scores per administration, driven entirely by the instrument definitions (YAML).

An *administration* is one instrument filled in at one session by one client. Its total
follows ``scoring.method`` (sum or mean) over the defined items; when some items are
missing but no more than ``scoring.max_missing_items``, a sum is *prorated*
(mean of the answered items x number of items), otherwise the total is null. Subscales
(e.g. WAI-SR task/bond/goal) and the CollaboRATE "top score" come from the same definition,
so a new instrument needs a YAML file and no Python.
"""

from __future__ import annotations

import polars as pl

from tandem.core.contracts import Instrument

ADMIN_KEYS = [
    "clinic_id",
    "client_key",
    "therapist_id",
    "session_date",
    "session_number",
    "instrument",
]


def subscale_column(name: str) -> str:
    """Column name of a subscale total (``sub_task`` for WAI-SR task)."""
    return f"sub_{name}"


def subscale_names(instruments: dict[str, Instrument]) -> list[str]:
    """All subscale names across instruments, in a stable order."""
    names: list[str] = []
    for inst in instruments.values():
        for name in inst.scoring.subscales:
            if name not in names:
                names.append(name)
    return names


def instrument_frame(instruments: dict[str, Instrument]) -> pl.DataFrame:
    """One row per instrument with the scoring rules as columns (for joins, not loops)."""
    rows = [
        {
            "instrument": code,
            "kind": inst.kind,
            "higher_is_better": inst.higher_is_better,
            "defined_items": inst.n_items,
            "method": inst.scoring.method,
            "max_missing_items": inst.scoring.max_missing_items,
            "top_value": (
                float(inst.scoring.top_score.all_items_equal) if inst.scoring.top_score else None
            ),
        }
        for code, inst in instruments.items()
    ]
    schema = {
        "instrument": pl.String,
        "kind": pl.String,
        "higher_is_better": pl.Boolean,
        "defined_items": pl.Int32,
        "method": pl.String,
        "max_missing_items": pl.Int32,
        "top_value": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _item_map(instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Defined (instrument, item) pairs; answers to undefined items are ignored."""
    rows = [
        {"instrument": code, "item": int(item.number)}
        for code, inst in instruments.items()
        for item in inst.items
    ]
    return pl.DataFrame(rows, schema={"instrument": pl.String, "item": pl.Int16})


def _subscale_map(instruments: dict[str, Instrument]) -> pl.DataFrame:
    rows = [
        {
            "instrument": code,
            "item": int(item),
            "subscale": name,
            "sub_items": len(sub.items),
            # The instrument's missing-item allowance, scaled to the subscale's length.
            "sub_max_missing": (inst.scoring.max_missing_items * len(sub.items)) // inst.n_items,
        }
        for code, inst in instruments.items()
        for name, sub in inst.scoring.subscales.items()
        for item in sub.items
    ]
    schema = {
        "instrument": pl.String,
        "item": pl.Int16,
        "subscale": pl.String,
        "sub_items": pl.Int32,
        "sub_max_missing": pl.Int32,
    }
    return pl.DataFrame(rows, schema=schema)


def answered_items(
    responses: pl.LazyFrame | pl.DataFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """One answer per administration and defined item (a re-sent item keeps the newest batch)."""
    lf = responses.lazy()
    return (
        lf.with_columns(pl.col("item").cast(pl.Int16))
        .join(_item_map(instruments).lazy(), on=["instrument", "item"], how="semi")
        .group_by([*ADMIN_KEYS, "item"])
        .agg(
            pl.col("score").sort_by("batch_id").last(),
            pl.col("batch_id").max(),
        )
    )


# Item scores are summed in fixed point (micro-units, exact in Int64): a float sum depends on
# the order of the items, and the per-client state must not depend on row order, so that a
# client recomputed alone gives bit-for-bit what a full rebuild gives. Answers have far fewer
# than 6 decimals (ORS has 1), so nothing is lost.
FIXED_POINT = 1_000_000


def _exact_sum(col: str = "score") -> pl.Expr:
    return (pl.col(col) * FIXED_POINT).round().cast(pl.Int64).sum() / FIXED_POINT


def _prorated_total(
    method: pl.Expr, n_answered: pl.Expr, n_defined: pl.Expr, max_missing: pl.Expr,
    total: pl.Expr, mean: pl.Expr,
) -> pl.Expr:
    missing = n_defined - n_answered
    return (
        pl.when(missing > max_missing)
        .then(None)
        .when(method == "mean")
        .then(mean)
        .when(missing == 0)
        .then(total)
        .otherwise(mean * n_defined)
    )


def score_administrations(
    responses: pl.DataFrame | pl.LazyFrame, instruments: dict[str, Instrument]
) -> pl.DataFrame:
    """One row per administration with ``total``, ``n_items``, ``prorated``, ``sub_*``,
    ``top_score`` and the ``batch_ids`` the answers came from (lineage)."""
    return score_administrations_lazy(responses, instruments).collect()


def score_administrations_lazy(
    responses: pl.DataFrame | pl.LazyFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """Lazy version of :func:`score_administrations` (for the marts pipeline)."""
    items = answered_items(responses, instruments)
    meta = instrument_frame(instruments).lazy()
    scored = (
        items.group_by(ADMIN_KEYS)
        .agg(
            _exact_sum().alias("_sum"),
            (_exact_sum() / pl.len()).alias("_mean"),
            pl.len().cast(pl.Int32).alias("n_items"),
            pl.col("score").min().alias("_min"),
            pl.col("batch_id").unique().sort().alias("batch_ids"),
        )
        .join(meta, on="instrument", how="left")
        .with_columns(
            _prorated_total(
                pl.col("method"), pl.col("n_items"), pl.col("defined_items"),
                pl.col("max_missing_items"), pl.col("_sum"), pl.col("_mean"),
            ).alias("total"),
        )
        .with_columns(
            (pl.col("total").is_not_null() & (pl.col("n_items") < pl.col("defined_items")))
            .alias("prorated"),
            # Top score (CollaboRATE): every defined item answered at the top value.
            pl.when(pl.col("top_value").is_null())
            .then(None)
            .otherwise(
                (pl.col("n_items") == pl.col("defined_items"))
                & (pl.col("_min") >= pl.col("top_value"))
            )
            .alias("top_score"),
        )
    )
    subs = _subscale_map(instruments)
    names = subscale_names(instruments)
    if subs.height:
        sub_scores = (
            items.join(subs.lazy(), on=["instrument", "item"], how="inner")
            .group_by([*ADMIN_KEYS, "subscale"])
            .agg(
                _exact_sum().alias("_s"),
                (_exact_sum() / pl.len()).alias("_m"),
                pl.len().cast(pl.Int32).alias("_n"),
                pl.col("sub_items").first(),
                pl.col("sub_max_missing").first(),
            )
            .join(meta.select("instrument", "method"), on="instrument", how="left")
            .with_columns(
                _prorated_total(
                    pl.col("method"), pl.col("_n"), pl.col("sub_items"),
                    pl.col("sub_max_missing"), pl.col("_s"), pl.col("_m"),
                ).alias("_total")
            )
            .group_by(ADMIN_KEYS)
            .agg(
                [
                    pl.col("_total").filter(pl.col("subscale") == name).first()
                    .alias(subscale_column(name))
                    for name in names
                ]
            )
        )
        scored = scored.join(sub_scores, on=ADMIN_KEYS, how="left", nulls_equal=True)
    return scored.select(
        *ADMIN_KEYS,
        pl.col("total").cast(pl.Float64),
        "n_items",
        "prorated",
        *[pl.col(subscale_column(n)).cast(pl.Float64) for n in names],
        "top_score",
        "batch_ids",
    )


def item_values(
    responses: pl.DataFrame | pl.LazyFrame, instruments: dict[str, Instrument], instrument: str
) -> pl.LazyFrame:
    """Answers of one instrument, one row per administration and item, with the item name.

    Used for per-item summaries such as the share of sessions with each checklist practice.
    """
    inst = instruments[instrument]
    names = pl.DataFrame(
        {
            "item": [int(i.number) for i in inst.items],
            "item_name": [i.name or f"item{i.number}" for i in inst.items],
        },
        schema={"item": pl.Int16, "item_name": pl.String},
    )
    return (
        answered_items(responses.lazy().filter(pl.col("instrument") == instrument), instruments)
        .join(names.lazy(), on="item", how="left")
    )
