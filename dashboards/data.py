"""Reading the published snapshot from Streamlit pages.

Each page view looks at the CURRENT pointer (a tiny file read), so a new publish shows
on the next view; queries are cached per snapshot version, so they are computed once
per publish, and a reader never mixes two snapshots.
"""

from __future__ import annotations

import duckdb
import polars as pl
import streamlit as st

from tandem import publish
from tandem.settings import get_settings


@st.cache_resource(max_entries=4)
def _connection(path: str) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(path, read_only=True)


def current_snapshot() -> publish.Snapshot | None:
    return publish.current(get_settings())


@st.cache_data(max_entries=256, show_spinner=False)
def _query(path: str, sql: str, params: tuple = ()) -> pl.DataFrame:
    con = _connection(path).cursor()
    return pl.from_arrow(con.sql(sql, params=list(params)).to_arrow_table())


def query(snapshot: publish.Snapshot, sql: str, params: tuple = ()) -> pl.DataFrame:
    """A read-only query on one snapshot (parameterised; never format input into SQL)."""
    return _query(str(snapshot.path), sql, params)


def table(snapshot: publish.Snapshot, name: str) -> pl.DataFrame:
    if name not in snapshot.tables:
        return pl.DataFrame()
    return query(snapshot, f'SELECT * FROM "{name}"')  # noqa: S608 - name checked above


def has(snapshot: publish.Snapshot, name: str) -> bool:
    return name in snapshot.tables


def publish_info(snapshot: publish.Snapshot) -> dict[str, str]:
    """The key/value facts written with the snapshot (as_of, last batch, ...)."""
    if not snapshot.tables and not snapshot.path.exists():
        return {}
    info = query(snapshot, "SELECT key, value FROM publish_info")
    return dict(zip(info["key"].to_list(), info["value"].to_list(), strict=True))


def as_of(snapshot: publish.Snapshot) -> str:
    """The reference date of the snapshot (the aggregate's ``as_of``), else its publish date."""
    return publish_info(snapshot).get("as_of") or f"{snapshot.published_at:%Y-%m-%d}"
