"""The ``agg_*`` tables: the ``aggregate`` flow's per-client state, kept in the warehouse.

Why: rebuilding every mart from all of ``response`` costs minutes at 10 M administrations.
The flow keeps what depends on one client's rows only (``transforms.client_state``) and
recomputes just the clients touched by new or superseded batches (docs/aggregate.md).

The data tables' columns follow the state frames, which depend on the instrument definitions
(one ``practice_<name>`` column per checklist item), so their DDL is generated from those
schemas; ``agg_state`` records the fingerprint of what the state was computed with, and a
different fingerprint makes the flow drop and rebuild every table. Only the flow writes
these tables, under ``warehouse.writer``. Kept apart from ``tandem.warehouse`` on purpose.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

# State frame (transforms.client_state.ClientState field) -> table.
TABLES = {
    "session": "agg_episode_session",
    "measure": "agg_episode_measure",
    "alliance": "agg_session_alliance",
    "subscale": "agg_subscale",
    "trajectory": "agg_trajectory",
    "track_latest": "agg_track_latest",
}

DDL = """
-- Key/value: watermark (highest batch_id aggregated), fingerprint, mode, updated_at.
CREATE TABLE IF NOT EXISTS agg_state (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
-- Superseded batches already accounted for (their clients were recomputed).
CREATE TABLE IF NOT EXISTS agg_superseded (
    batch_id BIGINT PRIMARY KEY
);
"""

_SCALARS: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR", pl.Categorical: "VARCHAR", pl.Enum: "VARCHAR",
    pl.Date: "DATE", pl.Boolean: "BOOLEAN", pl.Float64: "DOUBLE", pl.Float32: "FLOAT",
    pl.Int8: "TINYINT", pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.Int64: "BIGINT",
    pl.UInt8: "UTINYINT", pl.UInt16: "USMALLINT", pl.UInt32: "UINTEGER", pl.UInt64: "UBIGINT",
    pl.Null: "VARCHAR",
}


def duckdb_type(dtype: pl.DataType) -> str:
    """DuckDB column type for a Polars dtype (lists become ``T[]``)."""
    if isinstance(dtype, pl.List):
        return duckdb_type(dtype.inner) + "[]"
    base = _SCALARS.get(dtype.base_type())
    if base is None:
        raise TypeError(f"no DuckDB type for state column dtype {dtype}")
    return base


def table_ddl(table: str, schema: pl.Schema) -> str:
    cols = ",\n    ".join(f'"{name}" {duckdb_type(dtype)}' for name, dtype in schema.items())
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {cols}\n)"


def ensure(con: duckdb.DuckDBPyConnection, schemas: dict[str, pl.Schema]) -> None:
    """Create every ``agg_*`` table that does not exist yet."""
    con.execute(DDL)
    for name, table in TABLES.items():
        con.execute(table_ddl(table, schemas[name]))


def recreate(con: duckdb.DuckDBPyConnection, schemas: dict[str, pl.Schema]) -> None:
    """Drop and create the state tables empty (a full rebuild follows)."""
    for table in TABLES.values():
        con.execute(f"DROP TABLE IF EXISTS {table}")
    con.execute("DELETE FROM agg_superseded")
    con.execute("DELETE FROM agg_state")
    ensure(con, schemas)


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(con.execute("SELECT key, value FROM agg_state").fetchall())


def write_meta(con: duckdb.DuckDBPyConnection, **values: object) -> None:
    values = {**values, "updated_at": dt.datetime.now(dt.UTC).isoformat()}
    con.executemany("INSERT OR REPLACE INTO agg_state VALUES (?, ?)",
                    [(k, str(v)) for k, v in values.items()])
