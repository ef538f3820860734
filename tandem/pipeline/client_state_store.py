"""The ``agg_*`` tables: the aggregate's per-client state, kept in the lake.

Why: rebuilding every mart from all of ``response`` costs minutes at 10 M administrations.
The aggregate keeps what depends on one client's rows only (``transforms.client_state``) and
recomputes just the clients touched since the snapshot the state was computed from: rows
inserted since (DuckLake's change feed, ``table_changes``), or rows of a batch superseded
since (docs/aggregate.md). Episodes never cross clinics, so the state is computed per clinic
(:func:`clinic_piece`), in parallel where the caller maps the pieces out.

The data tables' columns follow the state frames, which depend on the instrument definitions
(one ``practice_<name>`` column per checklist item), so their DDL is generated from those
schemas; ``agg_state`` records the fingerprint of what the state was computed with, and a
different fingerprint rebuilds every table. Only the aggregate writes these tables.

The run itself (update the state, read it, build the population marts, publish) is
:mod:`tandem.pipeline.aggregate`.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from tandem.core import warehouse
from tandem.core.contracts import Instrument
from tandem.core.settings import Settings
from transforms.client_state import (
    RESPONSE_COLUMNS,
    ClientState,
    client_state,
    state_fingerprint,
    state_schemas,
)
from transforms.marts import MartParams

# State frame (transforms.client_state.ClientState field) -> table.
TABLES = {
    "session": "agg_episode_session",
    "measure": "agg_episode_measure",
    "alliance": "agg_session_alliance",
    "subscale": "agg_subscale",
    "trajectory": "agg_trajectory",
    "track_latest": "agg_track_latest",
    "score": "agg_outcome_score",
}

# Key/value: snapshot (the lake snapshot the state was computed from), fingerprint, mode,
# state_id, updated_at.
META_DDL = "CREATE TABLE IF NOT EXISTS agg_state (key VARCHAR NOT NULL, value VARCHAR NOT NULL)"

_SCALARS: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR", pl.Categorical: "VARCHAR", pl.Enum: "VARCHAR",
    pl.Date: "DATE", pl.Boolean: "BOOLEAN", pl.Float64: "DOUBLE", pl.Float32: "FLOAT",
    pl.Int8: "TINYINT", pl.Int16: "SMALLINT", pl.Int32: "INTEGER", pl.Int64: "BIGINT",
    pl.UInt8: "UTINYINT", pl.UInt16: "USMALLINT", pl.UInt32: "UINTEGER", pl.UInt64: "UBIGINT",
    pl.Null: "VARCHAR",
}
# Response rows per partition of one clinic's clients: bounds the per-client stage's memory.
ROWS_PER_PARTITION = 3_000_000
# Under TANDEM_HOME: the state of the latest version as Arrow IPC, keyed by agg_state's
# state_id (a new id per update), so an increment reads only the touched clients' rows.
STATE_CACHE = "aggregate-cache"
CLIENT_KEYS = ["clinic_id", "client_key"]


def duckdb_type(dtype: pl.DataType) -> str:
    """DuckDB column type for a Polars dtype (lists become ``T[]``)."""
    if isinstance(dtype, pl.List):
        return duckdb_type(dtype.inner) + "[]"
    base = _SCALARS.get(dtype.base_type())
    if base is None:
        raise TypeError(f"no DuckDB type for state column dtype {dtype}")
    return base


def table_ddl(table: str, schema: pl.Schema, replace: bool = False) -> str:
    cols = ",\n    ".join(f'"{name}" {duckdb_type(dtype)}' for name, dtype in schema.items())
    head = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
    return f"{head} {table} (\n    {cols}\n)"


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'lake' "
        "AND schema_name = 'main' AND table_name = 'agg_state'").fetchone()[0]
    if not exists:
        return {}
    return dict(con.execute("SELECT key, value FROM agg_state").fetchall())


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()[0][0]


@dataclass(frozen=True)
class Plan:
    """What an update will do, decided at one snapshot of the lake."""

    snapshot: int            # the lake snapshot every read of this update uses
    mode: str                # full | incremental
    touched: pl.DataFrame | None  # the clients to recompute (incremental)
    clinics: list[str]       # clinics with something to compute
    fingerprint: str
    base_state_id: str | None


def plan(con: duckdb.DuckDBPyConnection, instruments: dict[str, Instrument],
         params: MartParams, full: bool) -> Plan:
    """Full rebuild when asked, when there is no state yet, when the rules changed, or when
    the state's snapshot has expired; else the clients touched since that snapshot."""
    fingerprint = state_fingerprint(instruments, params.gap_days, params.cutoff_population)
    meta = read_meta(con)
    now = warehouse.current_snapshot(con)
    since = int(meta["snapshot"]) if meta.get("snapshot") else None
    rebuild = full or meta.get("fingerprint") != fingerprint or since is None
    touched = None
    if not rebuild:
        try:
            touched = _touched(con, since + 1, now) if since < now else pl.DataFrame(
                schema={"clinic_id": pl.String, "client_key": pl.String})
        except duckdb.Error as exc:  # the snapshot expired: the change feed is gone
            if "snapshot" not in str(exc).lower():
                raise
            rebuild = True
    if rebuild:
        clinics = [r[0] for r in con.execute(
            "SELECT DISTINCT clinic_id FROM response ORDER BY 1").fetchall()]
        return Plan(now, "full", None, clinics, fingerprint, None)
    assert touched is not None
    clinics = sorted(touched["clinic_id"].unique().to_list())
    return Plan(now, "incremental", touched, clinics, fingerprint, meta.get("state_id"))


def _touched(con: duckdb.DuckDBPyConnection, first: int, last: int) -> pl.DataFrame:
    """Clients with rows inserted in snapshots ``first..last``, or with rows in a batch
    superseded in them (a corrected re-send replaced those rows)."""
    return warehouse.query_frame(
        con,
        """
        SELECT DISTINCT clinic_id, client_key
        FROM lake.table_changes('response_row', $1, $2) WHERE change_type = 'insert'
        UNION
        SELECT DISTINCT r.clinic_id, r.client_key FROM response_row r
        WHERE r.batch_id IN (SELECT batch_id FROM lake.table_changes('batch_supersession', $1, $2)
                             WHERE change_type = 'insert')
        """,
        [first, last],
    ).sort(CLIENT_KEYS)


def clinic_piece(con: duckdb.DuckDBPyConnection, clinic: str, clients: pl.DataFrame | None,
                 instruments: dict[str, Instrument], params: MartParams,
                 rows_per_partition: int = ROWS_PER_PARTITION) -> ClientState:
    """The state of one clinic's clients (all of them, or ``clients``), from its current
    response rows as ``con`` sees them; a very large clinic is computed in client-hash
    partitions so memory stays bounded. Every partition holds all of a client's rows."""
    cols = ", ".join(f"r.{c}" for c in RESPONSE_COLUMNS)
    if clients is None:
        scope, params_ = "WHERE r.clinic_id = $1", [clinic]
    else:
        con.register("_piece_clients", clients.select(CLIENT_KEYS).to_arrow())
        scope = ("WHERE r.clinic_id = $1 AND r.client_key IN "
                 "(SELECT client_key FROM _piece_clients WHERE clinic_id = $1)")
        params_ = [clinic]
    try:
        rows = scalar(con, f"SELECT count(*) FROM response r {scope}", params_)  # noqa: S608 - table names and scopes are module constants
        parts = max(1, math.ceil(rows / rows_per_partition))
        frames: list[ClientState] = []
        for k in range(parts):
            where = scope + (" AND hash(r.client_key) % $2 = $3" if parts > 1 else "")
            responses = warehouse.query_frame(
                con, f"SELECT {cols} FROM response r {where}",  # noqa: S608 - table names and scopes are module constants
                params_ + ([parts, k] if parts > 1 else []))
            frames.append(client_state(responses, instruments, params.gap_days,
                                       params.cutoff_population))
    finally:
        if clients is not None:
            con.unregister("_piece_clients")
    return concat_states(frames)


def concat_states(states: list[ClientState]) -> ClientState:
    if len(states) == 1:
        return states[0]
    names = list(TABLES)
    return ClientState(**{n: pl.concat([s.frames()[n] for s in states], how="vertical_relaxed")
                          for n in names})


def write_state(con: duckdb.DuckDBPyConnection, p: Plan, pieces: ClientState,
                schemas: dict[str, pl.Schema], state_id: str) -> None:
    """Inside the aggregate's transaction: replace the recomputed clients' rows (or every
    table, after a full rebuild) and record what the state now is."""
    con.execute(META_DDL)
    if p.mode == "full":
        for name, table in TABLES.items():
            con.execute(table_ddl(table, schemas[name], replace=True))
    else:
        for name, table in TABLES.items():
            con.execute(table_ddl(table, schemas[name]))
        if p.touched is not None and p.touched.height:
            with warehouse.registered(con, "_agg_touched", p.touched):
                for table in TABLES.values():
                    con.execute(
                        f"DELETE FROM {table} WHERE (clinic_id, client_key) IN "  # noqa: S608 - table names and scopes are module constants
                        "(SELECT clinic_id, client_key FROM _agg_touched)")
    for name, frame in pieces.frames().items():
        warehouse.insert_frame(con, TABLES[name], frame.cast(dict(schemas[name])))
    con.execute("DELETE FROM agg_state")
    values = {"snapshot": p.snapshot, "fingerprint": p.fingerprint, "mode": p.mode,
              "state_id": state_id, "updated_at": dt.datetime.now(dt.UTC).isoformat()}
    con.executemany("INSERT INTO agg_state VALUES (?, ?)",
                    [(k, str(v)) for k, v in values.items()])


def read_state(con: duckdb.DuckDBPyConnection, schemas: dict[str, pl.Schema],
               clients: pl.DataFrame | None = None) -> ClientState:
    """The whole stored state (or that of ``clients``), typed as the transforms produce it."""
    frames = {}
    scope = ""
    if clients is not None:
        con.register("_agg_clients", clients.select(CLIENT_KEYS).to_arrow())
        scope = ("WHERE (s.clinic_id, s.client_key) IN "
                 "(SELECT clinic_id, client_key FROM _agg_clients)")
    try:
        for name, table in TABLES.items():
            cols = ", ".join(f's."{c}"' for c in schemas[name])
            frame = warehouse.query_frame(con, f"SELECT {cols} FROM {table} s {scope}")  # noqa: S608 - table names and scopes are module constants
            frames[name] = frame.cast(dict(schemas[name]))
    finally:
        if clients is not None:
            con.unregister("_agg_clients")
    return ClientState(**frames)


def empty_state(schemas: dict[str, pl.Schema]) -> ClientState:
    return ClientState(**{name: pl.DataFrame(schema=schemas[name]) for name in TABLES})


def _cache_dir(settings: Settings) -> Path:
    return settings.home_dir / STATE_CACHE


def read_cached(settings: Settings, state_id: str | None) -> ClientState | None:
    """The state of version ``state_id`` from the Arrow cache, or None when not cached."""
    if not state_id:
        return None
    folder = _cache_dir(settings) / state_id
    if not (folder / "complete").exists():
        return None
    try:
        return ClientState(**{name: pl.read_ipc(folder / f"{name}.arrow")
                              for name in TABLES})
    except OSError:
        return None


def write_cache(settings: Settings, state_id: str, state: ClientState) -> None:
    """Cache ``state`` as Arrow IPC (uncompressed: read back at memory speed) under
    ``<home>/aggregate-cache/<state_id>``; drop other versions. A cache is an optimisation:
    failing to write it only means the next run reads the lake."""
    root = _cache_dir(settings)
    folder = root / state_id
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, frame in state.frames().items():
            frame.write_ipc(folder / f"{name}.arrow", compression="uncompressed")
        (folder / "complete").write_text(state_id)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for other in root.iterdir():
        if other.name != state_id:
            shutil.rmtree(other, ignore_errors=True)


def merged_state(base: ClientState, pieces: ClientState,
                 touched: pl.DataFrame | None) -> ClientState:
    """``base`` with the touched clients' rows replaced by ``pieces`` (after an increment),
    or ``pieces`` alone (after a full rebuild). Row order differs from the tables'; the
    population marts sort their inputs."""
    if touched is None:
        return pieces
    keys = touched.select(CLIENT_KEYS).unique()
    return ClientState(**{
        name: pl.concat([frame.join(keys, on=CLIENT_KEYS, how="anti"),
                         pieces.frames()[name]], how="vertical_relaxed")
        for name, frame in base.frames().items()
    })


def state_schemas_for(instruments: dict[str, Instrument],
                      params: MartParams) -> dict[str, pl.Schema]:
    return state_schemas(instruments, params.gap_days, params.cutoff_population)
