"""Grouping for the director marts: the same aggregate for several scopes (all clinics, a
clinic, a clinic and month ...), and per calendar period. A missing grouping column is null,
meaning "all" (docs/marts.md)."""

from __future__ import annotations

import polars as pl

# Periods a director can filter by (docs/marts.md): rows per calendar month, quarter and year
# of the episode's last session, so a suppressed cell never has to be summed from months.
PERIODS = {"month": "1mo", "quarter": "1q", "year": "1y"}


def scoped(
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


def period_rows(
    lf: pl.LazyFrame, fn, periods: tuple[str, ...], date_col: str = "month"
) -> pl.DataFrame:
    """``fn`` per period (month / quarter / year of ``date_col``) for all clinics and per
    clinic: columns ``clinic_id`` (null = all), ``period``, ``period_start``, then fn's."""
    parts = []
    for period in periods:
        data = lf.with_columns(pl.col(date_col).dt.truncate(PERIODS[period])
                               .alias("period_start"))
        part = scoped(data, fn, [["period_start"], ["clinic_id", "period_start"]],
                       ["clinic_id", "period_start"])
        parts.append(part.with_columns(pl.lit(period).alias("period")))
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select("clinic_id", "period", "period_start",
                      pl.exclude("clinic_id", "period", "period_start"))


def empty_director_mart() -> pl.DataFrame:
    return pl.DataFrame(schema={"n_clients": pl.Int64})
