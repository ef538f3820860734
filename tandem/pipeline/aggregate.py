"""The aggregate: warehouse rows to published marts, in one atomic publish.

Four steps (docs/aggregate.md), each written once here; ``flows.aggregate`` makes each a
Prefect task and maps the per-clinic step over a task runner:

1. **plan** — at one snapshot of the lake: a full rebuild (asked for, no state yet, rules
   changed) or the clients touched since the snapshot the stored state was computed from
   (DuckLake's change feed), and the audit tables;
2. **clinic pieces** — the per-client state (``transforms.client_state``) of each clinic's
   touched clients (all of them after a full rebuild), read at that snapshot. Episodes never
   cross clinics, so clinics are independent: they run in parallel;
3. **build** — the stored state with the touched clients replaced by the pieces, and the
   population marts (``transforms.marts``) from it;
4. **publish** — one lake transaction writes the state and the marts, tagged ``published``
   (``tandem.core.published``); after an increment the row-level marts are patched for the
   touched clients only.

Free of Prefect: :func:`run_aggregate` is the whole run; ``step`` wraps each step and
``mapper`` maps the clinic pieces (serially, or over threads; the flow uses its task runner).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import polars as pl

from tandem.core import published, warehouse
from tandem.core.contracts import Instrument, load_instruments
from tandem.core.settings import Settings
from tandem.pipeline import client_state_store as store
from transforms.client_state import ClientState
from transforms.marts import MartParams, population_marts

# Audit tables published with the marts for the quality team's pages.
AUDIT_TABLES = {
    "audit_batch": "SELECT * FROM batch ORDER BY batch_id",
    "audit_quarantine": "SELECT * FROM quarantine ORDER BY batch_id, source_row, rule",
    "audit_validation_result": "SELECT * FROM validation_result ORDER BY batch_id, rule",
}
# Row-level marts in which an untouched client's rows depend only on its own state and the
# mart parameters: an incremental publish replaces just the touched clients' rows in them
# (tandem.core.published.RowPatch). off_track_episode is not one: the off-track model is
# fitted on all clients, so it is rewritten whole like the director marts.
CLIENT_MARTS = frozenset({"episode_session", "episode_measure", "session_alliance",
                          "episode_outcome"})
# Judged episode measures depend on other clients when an instrument's change rule uses the
# reference sample (GLN, HLL, EN, NK, HA, HLM, JT without a published SD, a / b / c from the
# sample): then they are rewritten whole, like the director marts.
JUDGED_MARTS = frozenset({"episode_measure", "episode_outcome"})


def client_marts(instruments: dict[str, Instrument]) -> frozenset[str]:
    """The row-level marts an incremental publish may patch client by client."""
    if any(i.change_rule is not None and i.change_rule.uses_sample
           for i in instruments.values()):
        return CLIENT_MARTS - JUDGED_MARTS
    return CLIENT_MARTS

Mapper = Callable[[Callable[..., ClientState], list[tuple]], Iterable[ClientState]]


class StateMoved(RuntimeError):
    """Another aggregate committed a newer state while this one ran: run again."""


@dataclass
class StateRead:
    """What the first three steps hand to the publish: the state, the audit tables, what
    was done, and what the publish must write besides the marts."""

    state: ClientState
    audit: dict[str, pl.DataFrame]
    info: dict
    plan: store.Plan
    pieces: ClientState
    state_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def touched(self) -> pl.DataFrame | None:
        return self.plan.touched if self.plan.mode != "full" else None

    @property
    def base_state_id(self) -> str | None:
        return self.plan.base_state_id


def mart_params(settings: Settings, as_of: dt.date) -> MartParams:
    return MartParams(
        gap_days=settings.episode_gap_days,
        open_days=settings.episode_open_days,
        min_cell_size=settings.min_cell_size,
        as_of=as_of,
    )


def serial_map(fn: Callable[..., ClientState], calls: list[tuple]) -> list[ClientState]:
    return [fn(*args) for args in calls]


def thread_map(workers: int) -> Mapper:
    """Pieces on a pool of threads: Polars and DuckDB work outside the GIL."""
    def run(fn: Callable[..., ClientState], calls: list[tuple]) -> list[ClientState]:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(lambda args: fn(*args), calls))
    return run


# --- step 1 ---------------------------------------------------------------------------------

def plan_update(settings: Settings, instruments: dict[str, Instrument], params: MartParams,
                full: bool) -> tuple[store.Plan, dict[str, pl.DataFrame], dict]:
    """The plan, the audit tables and the counts, all read at one snapshot."""
    with warehouse.writer(settings) as con:
        con.execute("BEGIN TRANSACTION")  # reads only: one snapshot for all of them
        try:
            p = store.plan(con, instruments, params, full)
            audit = {name: warehouse.query_frame(con, sql) for name, sql in AUDIT_TABLES.items()}
            info = {
                "last_batch_id": int(store.scalar(
                    con, "SELECT coalesce(max(batch_id), 0) FROM batch")),
                # what the publication holds (tandem.core.published.marts_lag)
                "batch_count": int(store.scalar(con, "SELECT count(*) FROM batch_record")),
                "responses": int(store.scalar(con, "SELECT count(*) FROM response")),
            }
        finally:
            con.execute("ROLLBACK")
    return p, audit, info


# --- step 2 ---------------------------------------------------------------------------------

def clinic_piece(settings: Settings, snapshot: int, clinic: str, clients: pl.DataFrame | None,
                 instruments: dict[str, Instrument], params: MartParams) -> ClientState:
    """One clinic's recomputed client state, read at ``snapshot`` (runs anywhere the lake
    is reachable: a thread, a task runner's worker, another machine)."""
    with warehouse.reader(settings, snapshot=snapshot) as con:
        return store.clinic_piece(con, clinic, clients, instruments, params)


# --- step 3 ---------------------------------------------------------------------------------

def update_and_read(settings: Settings, instruments: dict[str, Instrument], params: MartParams,
                    full: bool, mapper: Mapper = serial_map,
                    step: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
                    ) -> StateRead:
    """Plan, compute the pieces (mapped), and merge them into the state to publish."""
    wrap = step or _as_is
    schemas = store.state_schemas_for(instruments, params)
    p, audit, info = wrap(plan_update)(settings, instruments, params, full)
    touched = p.touched
    calls = [(settings, p.snapshot, clinic,
              None if touched is None else touched.filter(pl.col("clinic_id") == clinic),
              instruments, params) for clinic in p.clinics]
    parts = list(mapper(clinic_piece, calls)) if calls else []
    pieces = store.concat_states(parts) if parts else store.empty_state(schemas)
    if p.mode == "full":
        state = pieces
    else:
        base = store.read_cached(settings, p.base_state_id)
        if base is None:
            with warehouse.reader(settings, snapshot=p.snapshot) as con:
                base = store.read_state(con, schemas)
        state = store.merged_state(base, pieces, touched)
    info.update(mode=p.mode, snapshot=p.snapshot, clinics=len(p.clinics),
                clients_recomputed=int(
                    pieces.session.select(store.CLIENT_KEYS).unique().height),
                response_rows_read=int(pieces.session.height))
    return StateRead(state, audit, info, p, pieces)


def row_patch(read: StateRead, params: MartParams,
              tables: frozenset[str] = CLIENT_MARTS) -> published.RowPatch:
    """How to publish ``read``'s marts: patch the previous publication when it was built from
    the state this run started from with the same parameters, else write it whole."""
    key = hashlib.sha256(repr(params).encode()).hexdigest()[:16]
    incremental = read.plan.mode == "incremental"
    base = f"{read.base_state_id}:{key}" if read.base_state_id and incremental else None
    clients = read.plan.touched if incremental else pl.DataFrame(
        schema={"clinic_id": pl.String, "client_key": pl.String})
    return published.RowPatch(lineage=f"{read.state_id}:{key}", base=base, clients=clients,
                              tables=tables)


def publish_meta(day: dt.date, info: dict) -> dict:
    return {"as_of": day.isoformat(), "last_batch_id": info["last_batch_id"],
            "batch_count": info["batch_count"],
            "responses": info["responses"], "aggregate_mode": info["mode"],
            "clients_recomputed": info["clients_recomputed"], "snapshot": info["snapshot"]}


def build_marts(read: StateRead, settings: Settings, params: MartParams) -> dict[str, pl.DataFrame]:
    """Every published table: the population marts from the state, and the audit tables."""
    marts = population_marts(read.state, load_instruments(settings), params)
    marts.update(read.audit)
    return marts


# --- step 4 ---------------------------------------------------------------------------------

def publish_marts(marts: dict[str, pl.DataFrame], read: StateRead, settings: Settings,
                  meta: dict, patch: published.RowPatch | None = None) -> dict:
    """The marts and the state they come from, in one transaction tagged ``published``."""
    schemas = store.state_schemas_for(load_instruments(settings), _params_of(meta, settings))

    def write_state(con: duckdb.DuckDBPyConnection) -> None:
        now = store.read_meta(con).get("state_id")
        if read.plan.mode == "incremental" and now != read.plan.base_state_id:
            raise StateMoved(f"the stored state changed while this aggregate ran ({now})")
        store.write_state(con, read.plan, read.pieces, schemas, read.state_id)

    snap = published.publish(marts, settings, meta=meta, patch=patch, also=write_state)
    store.write_cache(settings, read.state_id, read.state)
    return {"version": snap.version, "snapshot_id": snap.snapshot_id, "tables": snap.tables,
            "patched": snap.patched}


def _params_of(meta: dict, settings: Settings) -> MartParams:
    return mart_params(settings, dt.date.fromisoformat(meta["as_of"]))


def _as_is(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


def run_aggregate(settings: Settings, day: dt.date, full: bool = False,
                  step: Callable[[Callable[..., Any]], Callable[..., Any]] = _as_is,
                  mapper: Mapper | None = None, attempts: int = 3) -> dict:
    """Bring the per-client state up to date (only touched clients unless ``full``), rebuild
    the population marts from it and publish both atomically.

    ``step`` wraps each step before it runs (the flow makes them Prefect tasks); ``mapper``
    runs the per-clinic pieces (default: threads, ``TANDEM_AGGREGATE_WORKERS``)."""
    mapper = mapper or thread_map(settings.aggregate_workers)
    instruments = load_instruments(settings)
    params = mart_params(settings, day)
    for attempt in range(1, attempts + 1):
        read = update_and_read(settings, instruments, params, full, mapper, step)
        marts = step(build_marts)(read, settings, params)
        try:
            info = step(publish_marts)(marts, read, settings, publish_meta(day, read.info),
                                       row_patch(read, params, client_marts(instruments)))
        except StateMoved:
            if attempt == attempts:
                raise
            continue
        return {**info, **read.info}
    raise AssertionError("unreachable")
