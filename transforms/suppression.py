"""Small-cell suppression, the one place it happens for every director-facing mart.

A cell describing fewer than ``min_cell_size`` distinct clients (DOMAIN.md: 10, configurable
via settings ``min_cell_size``) could identify a client. Its figures are set to null and
``suppressed`` is true, so a reader sees "suppressed", never a 0. The client count itself
is nulled too (a count of 3 is identifying); ``n_clients`` stays only for unsuppressed cells.
"""

from __future__ import annotations

import polars as pl

# Columns that describe the cell, not the clients in it; never suppressed.
KEEP_ALWAYS = frozenset(
    {
        "clinic_id", "therapist_id", "month", "instrument", "measure", "metric", "group",
        "level", "practice", "stratum", "scope", "unit", "estimand", "method", "direction",
        "observational", "suppressed", "adjustment", "period", "period_start",
        "band_low", "band_high", "bin_low", "bin_high", "alliance_instrument", "cutoff",
    }
)


def suppress(frame: pl.DataFrame, min_cell_size: int, n_col: str = "n_clients") -> pl.DataFrame:
    """Null every figure of rows whose ``n_col`` is below ``min_cell_size``; add ``suppressed``."""
    if n_col not in frame.columns:
        raise ValueError(f"suppression needs a client count column {n_col!r}")
    small = pl.col(n_col).is_null() | (pl.col(n_col) < min_cell_size)
    figures = [c for c in frame.columns if c not in KEEP_ALWAYS]
    return frame.with_columns(
        *[pl.when(small).then(None).otherwise(pl.col(c)).alias(c) for c in figures],
        small.alias("suppressed"),
    )


def suppress_marts(
    marts: dict[str, pl.DataFrame], min_cell_size: int, prefix: str = "dir_"
) -> dict[str, pl.DataFrame]:
    """Apply :func:`suppress` to every mart whose name starts with ``prefix``."""
    return {
        name: suppress(frame, min_cell_size) if name.startswith(prefix) else frame
        for name, frame in marts.items()
    }
