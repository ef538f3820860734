"""Reading the published marts from Streamlit pages.

Each page view asks the lake for its newest publication (one small catalog query; the lake
stays attached in this server process), so a new publish shows on the next view. Queries run
on the lake attached at that publication's snapshot, read-only, and are cached per
publication, so they are computed once per publish and a reader never mixes two publishes.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from tandem.core import published, warehouse
from tandem.core.settings import get_settings


def current_snapshot() -> published.Snapshot | None:
    """The newest publication (a catalog query on this process's connection to the lake)."""
    settings = get_settings()
    if not warehouse.lake_exists(settings):
        return None
    with warehouse.reader(settings) as con:
        return published.newest(con)


@st.cache_data(max_entries=256, show_spinner=False)
def _query(catalog: str, snapshot_id: int, version: str, sql: str,
           params: tuple = ()) -> pl.DataFrame:
    snap = published.Snapshot(version, snapshot_id, published_at=None, tables={})  # type: ignore[arg-type]
    with published.reading(snap, get_settings()) as con:
        return pl.from_arrow(con.execute(sql, list(params)).to_arrow_table())


def query(snapshot: published.Snapshot, sql: str, params: tuple = ()) -> pl.DataFrame:
    """A read-only query on one publication (parameterised; never format input into SQL)."""
    return _query(warehouse.catalog_spec(get_settings()), snapshot.snapshot_id,
                  snapshot.version, sql, params)


def table(snapshot: published.Snapshot, name: str) -> pl.DataFrame:
    if name not in snapshot.tables:
        return pl.DataFrame()
    return query(snapshot, f'SELECT * FROM "{name}"')  # noqa: S608 - name checked above


def has(snapshot: published.Snapshot, name: str) -> bool:
    return name in snapshot.tables


def publish_info(snapshot: published.Snapshot) -> dict[str, str]:
    """The key/value facts written with the publication (as_of, last batch, ...)."""
    info = query(snapshot, "SELECT key, value FROM publish_info")
    return dict(zip(info["key"].to_list(), info["value"].to_list(), strict=True))


def as_of(snapshot: published.Snapshot) -> str:
    """The reference date of the publication (the aggregate's ``as_of``), else its date."""
    return publish_info(snapshot).get("as_of") or f"{snapshot.published_at:%Y-%m-%d}"
