"""Published marts: a DuckLake snapshot that readers pin.

``publish`` writes every mart into the lake's ``marts`` schema in one transaction, with a
``publication`` row and the commit message ``published``. Readers (the dashboard, exports,
the quality summary) find the newest snapshot with that message and attach the lake *at* it,
read-only: every table as that one commit left it. So a reader never sees a half-written
publish (it is one commit), never mixes two publishes, and keeps serving while ingests and the
next aggregate commit; DuckLake's snapshot expiry (``tandem.pipeline.maintenance``) keeps the
published snapshots readers may still hold.

Incremental publish (:class:`RowPatch`): when only some clients changed, the row-level marts
named by the patch replace just those clients' rows (delete + insert) and every other mart is
rewritten whole. A patch is applied only if the newest publication was made from exactly the
state the patch starts from (``lineage``); otherwise every mart is written whole.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
import polars as pl

from tandem.core import warehouse
from tandem.core.faults import fault_point
from tandem.core.settings import Settings, get_settings
from tandem.core.warehouse import LAKE, registered

SCHEMA = "marts"
MESSAGE = "published"
PUBLICATION = "publication"
INFO = "publish_info"


@dataclass(frozen=True)
class Snapshot:
    """A publication: its name (``version``) and the lake snapshot that holds it."""

    version: str
    snapshot_id: int
    published_at: dt.datetime
    tables: dict[str, int]
    patched: bool = False  # written by patching the previous publication (RowPatch)


@dataclass(frozen=True)
class RowPatch:
    """Publish by patching the newest publication: only ``clients``' rows of ``tables`` differ.

    ``lineage`` names what this publish is built from (state version and mart parameters)
    and is recorded with the publication; the patch is applied only when the newest
    publication's lineage is ``base`` (None: never, write whole). ``clients`` has
    ``clinic_id`` and ``client_key``; every table in ``tables`` must have both columns."""

    lineage: str
    base: str | None
    clients: pl.DataFrame
    tables: frozenset[str] = field(default_factory=frozenset)


def publish(marts: dict[str, pl.DataFrame], settings: Settings | None = None,
            meta: dict | None = None, patch: RowPatch | None = None,
            also: Callable[[duckdb.DuckDBPyConnection], None] | None = None) -> Snapshot:
    """Write the marts (whole, or as a patch of the newest publication) and the publication
    record in one lake transaction tagged ``published``; ``also`` writes what must commit
    with them (the aggregate's state) in the same transaction."""
    settings = settings or get_settings()
    now = dt.datetime.now(dt.UTC)
    version = now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
    tables = {name: frame.height for name, frame in marts.items()}
    info = {"version": version, "published_at": now.isoformat(), **(meta or {})}
    if patch is not None:
        info["lineage"] = patch.lineage
    with warehouse.writer(settings) as con:

        def write(c: duckdb.DuckDBPyConnection) -> bool:
            if also is not None:
                also(c)
            return _write(c, marts, info, tables, patch)

        patched = warehouse.run_transaction(
            con, write, what="publish the marts",
            message=(MESSAGE, {"version": version, "published_at": now.isoformat(),
                               "tables": tables, "lineage": info.get("lineage"),
                               "last_batch_id": info.get("last_batch_id"),
                               "batch_count": info.get("batch_count")}),
            faults="publish_")
        snapshot_id = int(con.execute(
            "SELECT id FROM lake.last_committed_snapshot()").fetchone()[0])
    return Snapshot(version, snapshot_id, now, tables, patched)


def _write(con: duckdb.DuckDBPyConnection, marts: dict[str, pl.DataFrame], info: dict,
           tables: dict[str, int], patch: RowPatch | None) -> bool:
    con.execute("CREATE SCHEMA IF NOT EXISTS lake.marts")
    existing = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
        [LAKE, SCHEMA]).fetchall()}
    base = _newest_lineage(con) if patch is not None and patch.base is not None else None
    patching = patch is not None and base is not None and base == patch.base
    keep = {PUBLICATION, INFO}
    for name in sorted(existing - set(marts) - keep):
        con.execute(f'DROP TABLE {LAKE}.{SCHEMA}."{name}"')
    for name, frame in marts.items():
        if patching and name in patch.tables and name in existing \
                and _same_columns(con, name, frame):
            _patch(con, name, frame, patch.clients)
        else:
            _create(con, name, frame)
    fault_point("publish_after_marts")
    info_frame = pl.DataFrame({"key": list(info), "value": [str(v) for v in info.values()]})
    _create(con, INFO, info_frame)
    if PUBLICATION not in existing:
        con.execute("CREATE TABLE lake.marts.publication (version VARCHAR NOT NULL, "
                    "published_at TIMESTAMPTZ NOT NULL, lineage VARCHAR, tables VARCHAR, "
                    "info VARCHAR)")
    con.execute("INSERT INTO lake.marts.publication VALUES (?, ?, ?, ?, ?)",
                [info["version"], info["published_at"], info.get("lineage"),
                 json.dumps(tables), json.dumps(info, default=str)])
    return patching


def _newest_lineage(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute(
        "SELECT commit_extra_info FROM lake.snapshots() WHERE commit_message = ? "
        "ORDER BY snapshot_id DESC LIMIT 1", [MESSAGE]).fetchall()
    if not rows or not rows[0][0]:
        return None
    return json.loads(rows[0][0]).get("lineage")


def _create(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    with registered(con, "_frame", frame):
        con.execute(f'CREATE OR REPLACE TABLE {LAKE}.{SCHEMA}."{name}" AS '  # noqa: S608 - mart names are the code's own
                    "SELECT * FROM _frame")


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]  # noqa: S608 - mart names are the code's own


def _same_columns(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> bool:
    with registered(con, "_frame", frame.head(0)):
        return _columns(con, f'{LAKE}.{SCHEMA}."{name}"') == _columns(con, "_frame")


def _patch(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame,
           clients: pl.DataFrame) -> None:
    """Replace the clients' rows of one row-level mart (the others stay as published)."""
    keys = ["clinic_id", "client_key"]
    table = f'{LAKE}.{SCHEMA}."{name}"'
    who = clients.select(keys).unique()
    with registered(con, "_clients", who):
        con.execute(f"DELETE FROM {table} WHERE (clinic_id, client_key) IN "  # noqa: S608 - mart names are the code's own
                    "(SELECT clinic_id, client_key FROM _clients)")
    rows = frame.join(who, on=keys, how="semi")
    if rows.height:
        with registered(con, "_frame", rows):
            con.execute(f"INSERT INTO {table} SELECT * FROM _frame")  # noqa: S608 - mart names are the code's own


# --- readers --------------------------------------------------------------------------------

def _from_row(snapshot_id: int, extra: str | None) -> Snapshot:
    info = json.loads(extra or "{}")
    return Snapshot(version=str(info.get("version", snapshot_id)), snapshot_id=int(snapshot_id),
                    published_at=dt.datetime.fromisoformat(info["published_at"])
                    if info.get("published_at") else dt.datetime.fromtimestamp(0, dt.UTC),
                    tables=dict(info.get("tables") or {}))


def newest(con: duckdb.DuckDBPyConnection, before: int | None = None) -> Snapshot | None:
    """The newest publication seen from a connection to the lake (optionally: older than a
    snapshot id)."""
    sql = ("SELECT snapshot_id, commit_extra_info FROM lake.snapshots() "
           "WHERE commit_message = ?")
    params: list = [MESSAGE]
    if before is not None:
        sql += " AND snapshot_id < ?"
        params.append(before)
    rows = con.execute(sql + " ORDER BY snapshot_id DESC LIMIT 1", params).fetchall()
    return _from_row(*rows[0]) if rows else None


def publications(con: duckdb.DuckDBPyConnection) -> list[Snapshot]:
    """Every publication still held by the lake, newest first."""
    rows = con.execute(
        "SELECT snapshot_id, commit_extra_info FROM lake.snapshots() "
        "WHERE commit_message = ? ORDER BY snapshot_id DESC", [MESSAGE]).fetchall()
    return [_from_row(*r) for r in rows]


def current(settings: Settings | None = None) -> Snapshot | None:
    """The newest publication, or None before the first publish."""
    settings = settings or get_settings()
    if not warehouse.lake_exists(settings):
        return None
    with warehouse.reader(settings) as con:
        return newest(con)


def open_snapshot(snap: Snapshot, settings: Settings | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection on which the marts of ``snap`` are the default tables."""
    settings = settings or get_settings()
    con = warehouse.connect(settings, snapshot=snap.snapshot_id)
    con.execute(f"USE {warehouse.snapshot_alias(snap.snapshot_id)}.{SCHEMA}")
    return con


def open_current(
    settings: Settings | None = None,
) -> tuple[Snapshot, duckdb.DuckDBPyConnection] | None:
    settings = settings or get_settings()
    snap = current(settings)
    if snap is None:
        return None
    return snap, open_snapshot(snap, settings)


@contextmanager
def reading(snap: Snapshot, settings: Settings | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_snapshot(snap, settings)
    try:
        yield con
    finally:
        con.close()


def query_snapshot(snap: Snapshot, sql: str, params: list | None = None,
                   settings: Settings | None = None) -> list[tuple]:
    """The rows of one read-only query on a publication."""
    with reading(snap, settings) as con:
        return con.execute(sql, params or []).fetchall()


@dataclass(frozen=True)
class MartsLag:
    """How far the newest publication is behind the warehouse."""

    latest: int  # newest batch id in the warehouse (0: none)
    in_marts: int  # newest batch id in the newest publication (-1: none)
    missing: int  # batches of the warehouse the publication lacks
    published_at: float  # when it was published (epoch seconds; 0: never)

    @property
    def behind(self) -> bool:
        return self.missing > 0


def marts_lag(settings: Settings | None = None,
              con: duckdb.DuckDBPyConnection | None = None) -> MartsLag:
    """Which batches the newest publication lacks; on ``con`` when given.

    Not "newest batch id > the publication's newest": ids are taken before a load commits,
    so loads of two clinics can commit out of id order, and a publication planned between
    them includes batch 6 but not batch 5. Batch records are insert-only, so the number of
    them at the publication's plan snapshot (``batch_count``) says how many came after.
    Publications written before that count was kept are judged by id."""
    if con is None:
        settings = settings or get_settings()
        if not warehouse.lake_exists(settings):
            return MartsLag(0, -1, 0, 0.0)
        with warehouse.reader(settings) as own:
            return marts_lag(settings, own)
    latest, total = con.execute(
        "SELECT coalesce(max(batch_id), 0), count(*) FROM batch_record").fetchone()
    rows = con.execute(
        "SELECT commit_extra_info FROM lake.snapshots() WHERE commit_message = ? "
        "ORDER BY snapshot_id DESC LIMIT 1", [MESSAGE]).fetchall()
    if not rows:
        return MartsLag(int(latest), -1, int(total), 0.0)
    info = json.loads(rows[0][0] or "{}")
    in_marts = int(info["last_batch_id"]) if info.get("last_batch_id") is not None else -1
    at = (dt.datetime.fromisoformat(info["published_at"]).timestamp()
          if info.get("published_at") else 0.0)
    if info.get("batch_count") is not None:
        missing = int(total) - int(info["batch_count"])
    else:
        missing = int(con.execute("SELECT count(*) FROM batch_record WHERE batch_id > ?",
                                  [in_marts]).fetchone()[0])
    return MartsLag(int(latest), in_marts, max(missing, 0), at)


def published_state(settings: Settings | None = None,
                    con: duckdb.DuckDBPyConnection | None = None) -> tuple[int, float]:
    """(newest batch in the newest publication or -1, when it was published or 0); on
    ``con`` when given (a watcher's open connection), else on a connection of its own."""
    if con is None:
        settings = settings or get_settings()
        if not warehouse.lake_exists(settings):
            return -1, 0.0
        with warehouse.reader(settings) as own:
            return published_state(settings, own)
    rows = con.execute(
        "SELECT commit_extra_info FROM lake.snapshots() WHERE commit_message = ? "
        "ORDER BY snapshot_id DESC LIMIT 1", [MESSAGE]).fetchall()
    if not rows:
        return -1, 0.0
    info = json.loads(rows[0][0] or "{}")
    last = info.get("last_batch_id")
    at = dt.datetime.fromisoformat(info["published_at"]).timestamp() \
        if info.get("published_at") else 0.0
    return (int(last) if last is not None else -1), at
