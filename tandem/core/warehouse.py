"""The warehouse: a DuckLake (DuckDB's lakehouse format), its schema, and safe transactions.

A DuckLake is a SQL catalog plus Parquet data files. By default the catalog is a SQLite file
and the data are files under ``TANDEM_HOME/lake/``; scaled out, the catalog is a PostgreSQL
server (``TANDEM_CATALOG_URL``) and the data sit on a path every machine reaches
(``TANDEM_DATA_PATH``: a shared file system or object storage). Either way any number of
processes read and write at once, with no lock of Tandem's own: DuckLake commits
optimistically, and a commit that conflicts with another is retried whole
(:func:`run_transaction`). Readers never block writers; they read one snapshot.

Concurrency design (docs/warehouse.md, docs/scaling.md): the hot tables are insert-only
(``batch_record``, ``response_row``, ``reported_total_row``, ``quarantine``,
``validation_result``, ``batch_supersession``); a corrected re-send supersedes a batch by
inserting a row, and the views ``batch``, ``response`` and ``reported_total`` show the current
state, so loads of different clinics never conflict. Loads of one clinic are made to conflict
on that clinic's lock table (:func:`lock_clinics`), so the second one retries and then sees
the first: a file or an answer is never loaded twice. Batch ids come from a counter table in
short transactions of their own (:func:`allocate_batch_ids`).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from tandem.core import extensions
from tandem.core.faults import fault_point
from tandem.core.settings import Settings, get_settings

SCHEMA_VERSION = 3
LAKE = "lake"
T = TypeVar("T")

# The tables, as DuckLake has them (no primary keys or sequences: see the module doc).
TABLES = """
CREATE TABLE IF NOT EXISTS schema_info (
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL
);
-- One row: the next batch id to hand out (see allocate_batch_ids).
CREATE TABLE IF NOT EXISTS batch_id_counter (
    next_id BIGINT NOT NULL
);
-- One row per received file delivery (a batch), whatever its outcome, as recorded when it
-- finished. A later corrected re-send supersedes it by a batch_supersession row.
CREATE TABLE IF NOT EXISTS batch_record (
    batch_id BIGINT NOT NULL,
    clinic_id VARCHAR,
    source_name VARCHAR NOT NULL,
    stored_path VARCHAR,
    content_sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    format VARCHAR,
    received_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status VARCHAR NOT NULL,          -- loaded | failed | duplicate_file | superseded
    reason VARCHAR,
    rows_received BIGINT NOT NULL,
    rows_loaded BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    rows_duplicate BIGINT NOT NULL,
    rows_replaced BIGINT NOT NULL,
    replaces_batch_id BIGINT,
    duplicate_of_batch_id BIGINT,
    trigger VARCHAR NOT NULL,
    flow_run_id VARCHAR
);
-- A loaded batch replaced by a corrected re-send: its rows leave the response views.
CREATE TABLE IF NOT EXISTS batch_supersession (
    batch_id BIGINT NOT NULL,
    superseded_by_batch_id BIGINT NOT NULL,
    superseded_at TIMESTAMPTZ NOT NULL
);
-- One row per answered questionnaire item that passed its contract (also after its batch
-- was superseded: the view `response` shows the current ones).
CREATE TABLE IF NOT EXISTS response_row (
    clinic_id VARCHAR NOT NULL,
    client_key VARCHAR NOT NULL,      -- HMAC-SHA256 pseudonym, never the raw id
    therapist_id VARCHAR NOT NULL,
    session_date DATE NOT NULL,
    session_number INTEGER NOT NULL,
    instrument VARCHAR NOT NULL,
    item SMALLINT NOT NULL,
    score DOUBLE NOT NULL,
    batch_id BIGINT NOT NULL,
    source_row BIGINT NOT NULL,
    source_ref VARCHAR                -- how a person finds the record: line, or Sheet!row
);
-- One row per instrument total a source reports itself that passed its contract.
CREATE TABLE IF NOT EXISTS reported_total_row (
    clinic_id VARCHAR NOT NULL,
    client_key VARCHAR NOT NULL,
    therapist_id VARCHAR NOT NULL,
    session_date DATE NOT NULL,
    session_number INTEGER NOT NULL,
    instrument VARCHAR NOT NULL,
    total DOUBLE NOT NULL,
    items_total DOUBLE,
    batch_id BIGINT NOT NULL,
    source_row BIGINT NOT NULL,
    source_ref VARCHAR
);
-- One row per source row (or item of it) that failed a rule, with the reason.
CREATE TABLE IF NOT EXISTS quarantine (
    batch_id BIGINT NOT NULL,
    clinic_id VARCHAR,
    source_row BIGINT NOT NULL,
    rule VARCHAR NOT NULL,
    column_name VARCHAR,
    reason VARCHAR NOT NULL,
    raw_values VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL,
    source_ref VARCHAR,
    instrument VARCHAR,
    rows_set_aside BIGINT
);
-- One row per batch and data-contract rule: the Great Expectations outcome.
CREATE TABLE IF NOT EXISTS validation_result (
    batch_id BIGINT NOT NULL,
    rule VARCHAR NOT NULL,
    expectation_type VARCHAR NOT NULL,
    column_name VARCHAR,
    success BOOLEAN NOT NULL,
    element_count BIGINT,
    unexpected_count BIGINT,
    validated_at TIMESTAMPTZ NOT NULL
);
CREATE SCHEMA IF NOT EXISTS locks;
"""

# Tables added after schema version 3: made with the others in a new lake, and in an older
# lake by the first run that writes them (:func:`ensure_tables`); readers of an older lake
# see none (:func:`has_table`).
LATER_TABLES = {
    # A quarantined administration (batch, source_ref, instrument) that `tandem reprocess`
    # re-validated: loaded (or already loaded: duplicate) by, or quarantined again under,
    # the reprocess batch. A quarantine row without one is open.
    "quarantine_resolution": """
CREATE TABLE IF NOT EXISTS quarantine_resolution (
    batch_id BIGINT NOT NULL,
    source_ref VARCHAR,
    instrument VARCHAR,
    resolved_by_batch_id BIGINT NOT NULL,
    outcome VARCHAR NOT NULL,         -- loaded | duplicate | requarantined
    resolved_at TIMESTAMPTZ NOT NULL
);
""",
}

# The current state, in the column order of schema v2's tables (readers and marts rely on it).
VIEWS = """
CREATE OR REPLACE VIEW batch AS
SELECT b.batch_id, b.clinic_id, b.source_name, b.stored_path, b.content_sha256, b.size_bytes,
       b.format, b.received_at, b.finished_at,
       CASE WHEN s.batch_id IS NULL THEN b.status ELSE 'superseded' END AS status,
       b.reason, b.rows_received, b.rows_loaded, b.rows_quarantined, b.rows_duplicate,
       b.rows_replaced, b.replaces_batch_id, s.superseded_by_batch_id,
       b.duplicate_of_batch_id, b.trigger, b.flow_run_id
FROM batch_record b LEFT JOIN batch_supersession s ON s.batch_id = b.batch_id;
CREATE OR REPLACE VIEW response AS
SELECT * FROM response_row WHERE batch_id NOT IN (SELECT batch_id FROM batch_supersession);
CREATE OR REPLACE VIEW reported_total AS
SELECT * FROM reported_total_row
WHERE batch_id NOT IN (SELECT batch_id FROM batch_supersession);
"""

# Errors after which the whole transaction is tried again: another commit won (DuckLake's
# conflict check, or the SQLite catalog's single writer), or the catalog server went away
# mid-transaction (PostgreSQL restarted).
_RETRYABLE = re.compile(
    r"Transaction conflict|database is locked|server closed the connection|"
    r"Unable to connect to Postgres|Failed to execute query \"ROLLBACK\"|connection to server|"
    r"could not connect|Current transaction is aborted|terminating connection",
    re.IGNORECASE)


class WarehouseUnavailable(RuntimeError):
    """The lake could not be reached or committed to within the retry budget."""


# --- where the lake is -------------------------------------------------------------------

def catalog_spec(settings: Settings) -> str:
    """The ``ducklake:`` metadata spec: a SQLite file (default) or a PostgreSQL connection."""
    url = settings.catalog_url
    if not url:
        return f"sqlite:{settings.lake_dir / 'catalog.sqlite'}"
    if url.startswith(("postgres://", "postgresql://")):
        return f"postgres:{url}"
    if url.startswith(("postgres:", "sqlite:")):
        return url
    raise ValueError(f"TANDEM_CATALOG_URL must start with postgresql://, postgres: or sqlite: "
                     f"(got {url.split(':', 1)[0]}:...)")


def data_path(settings: Settings) -> str:
    path = settings.data_path or str(settings.lake_dir / "data")
    return path if path.endswith("/") else path + "/"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _attach_sql(settings: Settings, alias: str, *, create: bool, read_only: bool = False,
                snapshot: int | None = None) -> str:
    opts = []
    if create:
        opts.append(f"DATA_PATH {_quote(data_path(settings))}")
        if settings.catalog_url is None or settings.catalog_url.startswith("sqlite:"):
            # several processes: WAL, or one open reader blocks every writer's commit
            opts.append("META_JOURNAL_MODE 'WAL'")
        if settings.lake_encrypted:
            opts.append("ENCRYPTED")
    else:
        opts.append("CREATE_IF_NOT_EXISTS false")
    if snapshot is not None:
        opts.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    elif read_only:
        opts.append("READ_ONLY")
    if settings.catalog_url is None or settings.catalog_url.startswith("sqlite:"):
        opts.append("META_BUSY_TIMEOUT 5000")
    return (f"ATTACH {_quote('ducklake:' + catalog_spec(settings))} AS {alias} "
            f"({', '.join(opts)})")


def _new_connection(settings: Settings) -> duckdb.DuckDBPyConnection:
    return extensions.connect(settings.extension_dir)


def _attach(con: duckdb.DuckDBPyConnection, settings: Settings, alias: str = LAKE, *,
            read_only: bool = False, snapshot: int | None = None) -> None:
    """Attach the lake (creating and initialising it the first time, once)."""
    try:
        con.execute(_attach_sql(settings, alias, create=False, read_only=read_only,
                                snapshot=snapshot))
    except duckdb.Error as exc:
        if not _not_made_yet(exc):
            raise
    else:
        if _has_schema(con, alias):
            return
        # made this instant by another process, its tables not yet: wait for it
        con.execute(f"DETACH {alias}")
    initialise(settings)
    con.execute(_attach_sql(settings, alias, create=False, read_only=read_only,
                            snapshot=snapshot))


def _has_schema(con: duckdb.DuckDBPyConnection, alias: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = 'schema_info'", [alias]).fetchone()[0])


def _not_made_yet(exc: duckdb.Error) -> bool:
    """The attach failed because there is no lake yet (not for another reason)."""
    text = str(exc)
    return "does not exist" in text or "unable to open database file" in text


def initialise(settings: Settings) -> None:
    """Create the lake and its tables if they do not exist yet (idempotent).

    Two processes creating a new catalog at the same moment race on it, so creation happens
    under a file lock beside the home; every later attach needs no lock. With a PostgreSQL
    catalog shared by several machines, run ``tandem migrate`` once before the workers start.
    """
    settings.ensure_dirs()
    with extensions._exclusive(settings.home_dir / "lake.init.lock"):
        con = _new_connection(settings)
        try:
            try:
                con.execute(_attach_sql(settings, LAKE, create=False))
            except duckdb.Error as exc:
                if not _not_made_yet(exc):
                    raise
                if "://" not in data_path(settings):  # a local or shared file system
                    Path(data_path(settings)).mkdir(parents=True, exist_ok=True)
                con.execute(_attach_sql(settings, LAKE, create=True))
            run_transaction(con, lambda c: _create_schema(c, settings.lake_encrypted),
                            what="create the warehouse tables")
        finally:
            con.close()


def _create_schema(con: duckdb.DuckDBPyConnection, encrypted: bool) -> None:
    con.execute("USE lake")
    if con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = "
        "'batch_record'", [LAKE]).fetchone()[0]:
        return
    con.execute(TABLES)
    for ddl in LATER_TABLES.values():
        con.execute(ddl)
    con.execute(VIEWS)
    if encrypted:
        # Inlined rows would sit in the catalog in plain text: every row goes to Parquet.
        con.execute("CALL lake.set_option('data_inlining_row_limit', 0)")
    # response rows are read per clinic (the aggregate's partitions): one file set each
    con.execute("ALTER TABLE response_row SET PARTITIONED BY (clinic_id)")
    con.execute("INSERT INTO batch_id_counter VALUES (1)")
    con.execute("INSERT INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


# --- connections ---------------------------------------------------------------------------

# One DuckDB instance per lake and process, with the lake attached once: loading the lake's
# extensions costs about a second per instance, so connections are cursors of it (each its
# own transactions and default schema). Snapshot attachments are kept a few at a time.
_ENGINES: dict[tuple, duckdb.DuckDBPyConnection] = {}
_PINNED: dict[tuple, list[int]] = {}
_ENGINES_LOCK = threading.Lock()
PINNED_KEPT = 16


def _key(settings: Settings) -> tuple:
    return (catalog_spec(settings), data_path(settings), str(settings.extension_dir),
            settings.lake_encrypted)


def _engine(settings: Settings) -> duckdb.DuckDBPyConnection:
    key = _key(settings)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            settings.ensure_dirs()
            engine = _new_connection(settings)
            try:
                _attach(engine, settings)
            except BaseException:
                engine.close()
                raise
            _ENGINES[key] = engine
            _PINNED[key] = []
        return engine


def snapshot_alias(snapshot: int) -> str:
    """The name the lake as of ``snapshot`` is attached under (read-only)."""
    return f"lake_at_{int(snapshot)}"


def _pin(settings: Settings, engine: duckdb.DuckDBPyConnection, snapshot: int) -> str:
    alias, key = snapshot_alias(snapshot), _key(settings)
    with _ENGINES_LOCK:
        pinned = _PINNED[key]
        if snapshot not in pinned:
            engine.execute(_attach_sql(settings, alias, create=False, snapshot=snapshot))
            pinned.append(snapshot)
            while len(pinned) > PINNED_KEPT:  # the oldest readers have long moved on
                with suppress(duckdb.Error):
                    engine.execute(f"DETACH {snapshot_alias(pinned.pop(0))}")
    return alias


def connect(settings: Settings | None = None, *, read_only: bool = False,
            snapshot: int | None = None) -> duckdb.DuckDBPyConnection:
    """A connection on which the lake's tables are the default ones (by plain name).

    ``snapshot``: the whole lake as it was at that snapshot (attached read-only).
    ``read_only`` is the caller's promise (readers never write)."""
    settings = settings or get_settings()
    engine = _engine(settings)
    con = engine.cursor()
    try:
        con.execute(f"USE {_pin(settings, engine, snapshot) if snapshot is not None else LAKE}")
    except BaseException:
        con.close()
        raise
    return con


def close_engines(settings: Settings | None = None) -> None:
    """Close the lake this process attached for ``settings`` (every lake when None): before
    the lake's files are replaced (a restore), or when a process moves on."""
    with _ENGINES_LOCK:
        keys = list(_ENGINES) if settings is None else [_key(settings)]
        for key in keys:
            engine = _ENGINES.pop(key, None)
            _PINNED.pop(key, None)
            if engine is not None:
                with suppress(duckdb.Error):
                    engine.close()


@contextmanager
def writer(settings: Settings | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for writing. Writes go through :func:`run_transaction` (no lock is
    taken: other processes write at the same time)."""
    con = connect(settings)
    try:
        fault_point("after_lock")
        yield con
    finally:
        _close(con)


@contextmanager
def reader(settings: Settings | None = None,
           snapshot: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that reads the warehouse's current rows (or those at ``snapshot``).
    Use this, never ``duckdb.connect`` on a path: how the warehouse is stored is this
    module's business."""
    con = connect(settings, read_only=True, snapshot=snapshot)
    try:
        yield con
    finally:
        _close(con)


def _close(con: duckdb.DuckDBPyConnection) -> None:
    """End a transaction left open (as a Python error, if the catalog is gone) before the
    cursor closes: a rollback inside ``close()`` whose catalog connection broke (PostgreSQL
    restarted) aborted the whole process (DuckDB 1.5.5, seen in tests/e2e/test_scaled_out)."""
    _rollback(con)
    con.close()


# --- transactions -------------------------------------------------------------------------

def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.Error) and bool(_RETRYABLE.search(str(exc)))


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.Error):  # after a failed COMMIT the transaction is gone already
        con.execute("ROLLBACK")


def run_transaction(con: duckdb.DuckDBPyConnection, work: Callable[[duckdb.DuckDBPyConnection], T],
                    *, what: str, message: tuple[str, dict[str, Any]] | None = None,
                    deadline_seconds: float = 900.0, faults: str | None = None) -> T:
    """``work(con)`` in one transaction, committed; tried again whole while another commit
    wins the race or the catalog server is briefly away, with jittered backoff.

    ``work`` must do all its reads inside (they see this attempt's snapshot) and may be run
    several times. ``message``: the snapshot's commit message and extra information.
    ``faults``: the prefix of this transaction's fault points (``before_commit`` ...)."""
    start, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        try:
            con.execute("BEGIN TRANSACTION")
            result = work(con)
            if message is not None:
                con.execute("CALL lake.set_commit_message('tandem', ?, extra_info => ?)",
                            [message[0], json.dumps(message[1], default=str)])
            if faults is not None:
                fault_point(f"{faults}before_commit")
            con.execute("COMMIT")
            if faults is not None:
                fault_point(f"{faults}after_commit")
            return result
        except BaseException as exc:
            _rollback(con)
            if not is_retryable(exc):
                raise
            if time.monotonic() - start > deadline_seconds:
                raise WarehouseUnavailable(
                    f"could not {what} within {deadline_seconds:.0f} s "
                    f"({attempt} attempts; last: {str(exc).splitlines()[0][:200]})") from exc
            time.sleep(min(5.0, 0.05 * 1.6 ** min(attempt, 12)) * random.uniform(0.5, 1.0))


# --- ids and locks ------------------------------------------------------------------------

def allocate_batch_ids(con: duckdb.DuckDBPyConnection, n: int) -> list[int]:
    """``n`` new batch ids, unique across every process (a counter row in a short
    transaction of its own; ids of a process that dies unused are simply skipped)."""
    if n <= 0:
        return []

    def take(c: duckdb.DuckDBPyConnection) -> int:
        first = c.execute("SELECT next_id FROM batch_id_counter").fetchall()[0][0]
        c.execute("UPDATE batch_id_counter SET next_id = next_id + ?", [n]).fetchall()
        return int(first)

    first = run_transaction(con, take, what="allocate batch ids")
    return list(range(first, first + n))


_LOCK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _lock_table(clinic_id: str) -> str:
    if not _LOCK_NAME.match(clinic_id):
        raise ValueError(f"not a clinic id: {clinic_id!r}")
    return f'locks."{clinic_id}"'


def lock_clinics(con: duckdb.DuckDBPyConnection, clinic_ids: list[str]) -> None:
    """Inside a load transaction: make it conflict with every other load of these clinics,
    so one of two concurrent loads retries and then sees what the other committed (two
    loads of different clinics do not conflict). Lock tables are made once per clinic."""
    missing = [c for c in sorted(set(clinic_ids)) if not _has_lock(con, c)]
    if missing:
        raise _MissingLocks(missing)
    for clinic in sorted(set(clinic_ids)):
        updated = con.execute(
            f"UPDATE {_lock_table(clinic)} SET n = n + 1").fetchall()  # noqa: S608 - validated id
        if updated[0][0] != 1:  # a lock that changes no row would not conflict
            raise RuntimeError(f"the lock table of clinic {clinic} does not hold one row")


class _MissingLocks(Exception):
    def __init__(self, clinics: list[str]):
        super().__init__(", ".join(clinics))
        self.clinics = clinics


def _has_lock(con: duckdb.DuckDBPyConnection, clinic_id: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'locks' "
        "AND table_name = ?", [LAKE, clinic_id]).fetchone()[0])


def ensure_clinic_locks(con: duckdb.DuckDBPyConnection, clinic_ids: list[str]) -> None:
    """Make the lock table of each clinic that has none (each in a short transaction)."""
    for clinic in sorted(set(clinic_ids)):
        if _has_lock(con, clinic):
            continue

        def make(c: duckdb.DuckDBPyConnection, clinic: str = clinic) -> None:
            if _has_lock(c, clinic):
                return
            table = _lock_table(clinic)
            c.execute(f"CREATE TABLE {table} (n BIGINT NOT NULL)")
            c.execute(f"INSERT INTO {table} VALUES (0)")  # noqa: S608 - validated id

        try:
            run_transaction(con, make, what=f"create the lock of clinic {clinic}")
        except duckdb.Error as exc:  # made by another process meanwhile
            if "already" not in str(exc):
                raise


def run_locked(con: duckdb.DuckDBPyConnection, clinic_ids: list[str],
               work: Callable[[duckdb.DuckDBPyConnection], T], *, what: str,
               message: tuple[str, dict[str, Any]] | None = None,
               faults: str | None = None) -> T:
    """:func:`run_transaction` holding the clinics' locks (made first if they are new)."""
    ensure_clinic_locks(con, clinic_ids)

    def locked(c: duckdb.DuckDBPyConnection) -> T:
        lock_clinics(c, clinic_ids)
        return work(c)

    return run_transaction(con, locked, what=what, message=message, faults=faults)


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the lake has this table of its main schema (a later table may be missing)."""
    return bool(con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ?", [name]).fetchone()[0])


def ensure_tables(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """Make the later tables named (:data:`LATER_TABLES`) that an older lake lacks."""
    for name in names:
        if has_table(con, name):
            continue

        def make(c: duckdb.DuckDBPyConnection, name: str = name) -> None:
            c.execute(LATER_TABLES[name])

        try:
            run_transaction(con, make, what=f"create the table {name}")
        except duckdb.Error as exc:  # made by another process meanwhile
            if "already" not in str(exc):
                raise


# --- frames in and out --------------------------------------------------------------------

@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame) -> Iterator[str]:
    """A Polars frame visible to SQL as ``name`` (via Arrow, no copy) while the block runs."""
    con.register(name, frame.to_arrow())
    try:
        yield name
    finally:
        con.unregister(name)


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame) -> None:
    """Append a frame's rows to ``table`` by column name (nothing for an empty frame).
    ``table`` is always a caller's literal, never input."""
    if frame.height:
        with registered(con, "_insert_frame", frame):
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _insert_frame")  # noqa: S608 - table is a caller's literal


def query_frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """Run a parameterised query and return a Polars frame (via Arrow, no copy of columns).

    ``execute``, not the relational ``sql``: on DuckDB 1.5.5 a relation's Arrow export of a
    lake scan ran about 25 times slower (7.3 s against 0.29 s for 1.4 M answers)."""
    import polars as pl

    return pl.from_arrow(con.execute(sql, params or []).to_arrow_table())


# --- what readers and the served pipeline ask ----------------------------------------------

def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    """The lake's newest snapshot id (or, in a transaction, the one it reads)."""
    return int(con.execute("SELECT id FROM lake.current_snapshot()").fetchone()[0])


def lake_exists(settings: Settings) -> bool:
    """Whether the lake was made (a SQLite catalog file; a PostgreSQL catalog is assumed)."""
    spec = catalog_spec(settings)
    if spec.startswith("sqlite:"):
        path = Path(spec.removeprefix("sqlite:"))
        return path.exists() and path.stat().st_size > 0
    return True


def latest_batch_id(settings: Settings, con: duckdb.DuckDBPyConnection | None = None) -> int:
    """Newest batch in the warehouse (0 when there is none); on ``con`` when given."""
    if con is None:
        if not lake_exists(settings):
            return 0
        with reader(settings) as own:
            return latest_batch_id(settings, own)
    return int(con.execute("SELECT coalesce(max(batch_id), 0) FROM batch_record").fetchone()[0])
