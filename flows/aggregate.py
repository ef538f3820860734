"""The ``aggregate`` flow: warehouse rows to published marts, in one atomic publish.

Incremental (docs/aggregate.md): under the writer lock it finds the clients touched since the
last run (rows in batches newer than the watermark, or lineage in a batch that has since been
superseded), recomputes only their per-client state (``transforms.client_state``) from their
``response`` rows, replaces their ``agg_*`` rows in one transaction and reads the (small)
state back. Then, lock released, it builds the population marts
(``transforms.marts.population_marts``) and publishes them as one new snapshot that readers
switch to at once (tandem.publish). ``full=True`` (or changed rules) rebuilds every client,
streamed in client-hash partitions so memory stays bounded at 10 M administrations.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import duckdb
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.events import emit_marts_published
from tandem import aggregate_state, publish, warehouse
from tandem.contracts import Instrument, load_instruments
from tandem.settings import Settings, get_settings
from transforms.client_state import (
    RESPONSE_COLUMNS,
    ClientState,
    client_state,
    state_fingerprint,
    state_schemas,
)
from transforms.marts import MartParams, population_marts

# Audit tables copied into every snapshot for the quality team's pages.
AUDIT_TABLES = {
    "audit_batch": "SELECT * FROM batch ORDER BY batch_id",
    "audit_quarantine": "SELECT * FROM quarantine ORDER BY batch_id, source_row, rule",
    "audit_validation_result": "SELECT * FROM validation_result ORDER BY batch_id, rule",
}
# Response rows per client-hash partition: bounds the per-client stage's memory (~1 GB).
ROWS_PER_PARTITION = 3_000_000
TOUCHED = "_agg_touched"


@dataclass
class StateRead:
    """What the locked part hands on: the state, the audit tables and what was done."""

    state: ClientState
    audit: dict[str, pl.DataFrame]
    info: dict


def mart_params(settings: Settings, as_of: dt.date) -> MartParams:
    return MartParams(
        gap_days=settings.episode_gap_days,
        open_days=settings.episode_open_days,
        min_cell_size=settings.min_cell_size,
        as_of=as_of,
    )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchall()[0][0]


def _mark_touched(con: duckdb.DuckDBPyConnection, watermark: int) -> None:
    """Clients with rows in batches after ``watermark``, plus clients whose state has lineage
    in a batch superseded since (a corrected re-send deleted those rows)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {TOUCHED} AS
        SELECT DISTINCT clinic_id, client_key FROM response WHERE batch_id > ?
        UNION
        SELECT DISTINCT clinic_id, client_key FROM (
            SELECT clinic_id, client_key, unnest(batch_ids) AS batch_id
            FROM {aggregate_state.TABLES["session"]}
        ) WHERE batch_id IN (
            SELECT batch_id FROM batch WHERE superseded_by_batch_id IS NOT NULL
            AND batch_id NOT IN (SELECT batch_id FROM agg_superseded)
        )
        """,  # noqa: S608 - table names are ours
        [watermark],
    )


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if not frame.height:
        return
    con.register("_agg_frame", frame.to_arrow())
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _agg_frame")  # noqa: S608
    finally:
        con.unregister("_agg_frame")


def recompute_clients(
    con: duckdb.DuckDBPyConnection, instruments: dict[str, Instrument], params: MartParams,
    touched_only: bool, rows_per_partition: int = ROWS_PER_PARTITION,
) -> dict:
    """Compute and insert the state of every client (or of those in the touched table),
    a client-hash partition at a time: all of a client's rows land in one partition."""
    scope = f"SEMI JOIN {TOUCHED} t USING (clinic_id, client_key)" if touched_only else ""
    rows = _scalar(con, f"SELECT count(*) FROM response r {scope}")  # noqa: S608
    parts = math.ceil(rows / rows_per_partition)
    cols = ", ".join(f"r.{c}" for c in RESPONSE_COLUMNS)
    for k in range(parts):
        responses = warehouse.query_frame(
            con,
            f"SELECT {cols} FROM response r {scope} WHERE hash(r.client_key) % ? = ?",  # noqa: S608
            [parts, k],
        )
        state = client_state(responses, instruments, params.gap_days, params.cutoff_population)
        del responses
        for name, frame in state.frames().items():
            _insert(con, aggregate_state.TABLES[name], frame)
    source = TOUCHED if touched_only else aggregate_state.TABLES["session"]
    clients = _scalar(
        con, f"SELECT count(*) FROM (SELECT DISTINCT clinic_id, client_key FROM {source})"  # noqa: S608
    )
    return {"response_rows_read": int(rows), "partitions": parts, "clients_recomputed": clients}


def update_state(
    con: duckdb.DuckDBPyConnection, instruments: dict[str, Instrument], params: MartParams,
    full: bool = False, rows_per_partition: int = ROWS_PER_PARTITION,
) -> dict:
    """Bring the ``agg_*`` state up to date in one transaction (caller holds the writer lock).
    Full rebuild when asked, when there is no state yet, or when the rules changed."""
    schemas = state_schemas(instruments, params.gap_days, params.cutoff_population)
    fingerprint = state_fingerprint(instruments, params.gap_days, params.cutoff_population)
    aggregate_state.ensure(con, schemas)
    meta = aggregate_state.read_meta(con)
    watermark = int(_scalar(con, "SELECT coalesce(max(batch_id), 0) FROM batch"))
    rebuild = full or meta.get("fingerprint") != fingerprint or "watermark" not in meta
    with warehouse.transaction(con):
        if rebuild:
            aggregate_state.recreate(con, schemas)
            done = recompute_clients(con, instruments, params, False, rows_per_partition)
        else:
            _mark_touched(con, int(meta["watermark"]))
            for table in aggregate_state.TABLES.values():
                con.execute(
                    f"DELETE FROM {table} USING {TOUCHED} t "  # noqa: S608
                    f"WHERE {table}.clinic_id = t.clinic_id AND {table}.client_key = t.client_key"
                )
            done = recompute_clients(con, instruments, params, True, rows_per_partition)
        con.execute(
            "INSERT INTO agg_superseded SELECT batch_id FROM batch "
            "WHERE superseded_by_batch_id IS NOT NULL "
            "AND batch_id NOT IN (SELECT batch_id FROM agg_superseded)"
        )
        mode = "full" if rebuild else "incremental"
        aggregate_state.write_meta(con, watermark=watermark, fingerprint=fingerprint, mode=mode)
    con.execute(f"DROP TABLE IF EXISTS {TOUCHED}")
    return {"mode": mode, "watermark": watermark, **done}


def read_state(con: duckdb.DuckDBPyConnection, schemas: dict[str, pl.Schema]) -> ClientState:
    """The whole state, typed as the transforms produce it."""
    frames = {}
    for name, table in aggregate_state.TABLES.items():
        frame = warehouse.query_frame(con, f"SELECT * FROM {table}")  # noqa: S608
        frames[name] = frame.select(list(schemas[name])).cast(dict(schemas[name]))
    return ClientState(**frames)


def update_and_read(
    settings: Settings, instruments: dict[str, Instrument], params: MartParams, full: bool
) -> StateRead:
    """Everything that touches the warehouse, under the writer lock: so the state matches one
    consistent warehouse, never a half-written batch."""
    schemas = state_schemas(instruments, params.gap_days, params.cutoff_population)
    with warehouse.writer(settings) as con:
        info = update_state(con, instruments, params, full)
        state = read_state(con, schemas)
        audit = {name: warehouse.query_frame(con, sql) for name, sql in AUDIT_TABLES.items()}
        info["last_batch_id"] = int(_scalar(con, "SELECT coalesce(max(batch_id), 0) FROM batch"))
        info["responses"] = int(_scalar(con, "SELECT count(*) FROM response"))
    return StateRead(state, audit, info)


def run_aggregate(settings: Settings, day: dt.date, full: bool = False) -> dict:
    """The flow's work without Prefect (benchmarks): update, build, publish."""
    instruments = load_instruments(settings)
    params = mart_params(settings, day)
    read = update_and_read(settings, instruments, params, full)
    marts = population_marts(read.state, instruments, params)
    marts.update(read.audit)
    snap = publish.publish(marts, settings, meta=_meta(day, read.info))
    return {"version": snap.version, "path": str(snap.path), "tables": snap.tables, **read.info}


def _meta(day: dt.date, info: dict) -> dict:
    return {"as_of": day.isoformat(), "last_batch_id": info["last_batch_id"],
            "responses": info["responses"], "aggregate_mode": info["mode"],
            "clients_recomputed": info["clients_recomputed"]}


@task(name="update-state", cache_policy=NO_CACHE)
def update_state_task(settings: Settings, params: MartParams, full: bool) -> StateRead:
    return update_and_read(settings, load_instruments(settings), params, full)


@task(name="build-marts", cache_policy=NO_CACHE)
def build(state: ClientState, settings: Settings, params: MartParams) -> dict[str, pl.DataFrame]:
    return population_marts(state, load_instruments(settings), params)


@task(name="publish-marts", cache_policy=NO_CACHE)
def publish_marts(marts: dict[str, pl.DataFrame], settings: Settings, meta: dict) -> dict:
    snap = publish.publish(marts, settings, meta=meta)
    return {"version": snap.version, "path": str(snap.path), "tables": snap.tables}


@flow(name="aggregate", log_prints=True)
def aggregate(as_of: str | None = None, full: bool = False) -> dict:
    """Bring the per-client state up to date (only touched clients unless ``full``), rebuild
    the population marts from it and publish them atomically."""
    settings = get_settings()
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    params = mart_params(settings, day)
    read = update_state_task(settings, params, full)
    last_batch = read.info["last_batch_id"]
    marts = build(read.state, settings, params)
    marts.update(read.audit)
    info = publish_marts(marts, settings, _meta(day, read.info))
    # --- events (flows/events.py): tell listeners the dashboard's data changed ---
    emit_marts_published({**info, "last_batch_id": last_batch})
    get_run_logger().info(
        "published snapshot %s (%s aggregate, %d clients recomputed): %s",
        info["version"], read.info["mode"], read.info["clients_recomputed"],
        ", ".join(f"{k}={v}" for k, v in sorted(info["tables"].items())),
    )
    return {**info, **{k: read.info[k] for k in ("mode", "clients_recomputed",
                                                 "response_rows_read", "partitions")}}
