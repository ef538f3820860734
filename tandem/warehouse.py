"""DuckDB warehouse access: the schema, and one writer at a time.

DuckDB allows one read-write process or many read-only ones, never both. So every write
goes through :func:`writer`, which takes an inter-process file lock first (two ingests
queue instead of failing), and readers (the dashboard) never open this file: they read
the published snapshot (see :mod:`tandem.publish`). The schema is a public interface,
documented in ``docs/warehouse.md``; change both together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from filelock import FileLock

from tandem.faults import fault_point
from tandem.settings import Settings, get_settings

SCHEMA_VERSION = 2

DDL = """
CREATE SEQUENCE IF NOT EXISTS batch_id_seq START 1;

CREATE TABLE IF NOT EXISTS schema_info (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- One row per received file delivery (a batch), whatever its outcome.
CREATE TABLE IF NOT EXISTS batch (
    batch_id BIGINT PRIMARY KEY,
    clinic_id VARCHAR,
    source_name VARCHAR NOT NULL,
    stored_path VARCHAR,
    content_sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    format VARCHAR,
    received_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status VARCHAR NOT NULL,          -- loaded | failed | duplicate_file
    reason VARCHAR,
    rows_received BIGINT NOT NULL DEFAULT 0,
    rows_loaded BIGINT NOT NULL DEFAULT 0,
    rows_quarantined BIGINT NOT NULL DEFAULT 0,
    rows_duplicate BIGINT NOT NULL DEFAULT 0,
    rows_replaced BIGINT NOT NULL DEFAULT 0,
    replaces_batch_id BIGINT,
    superseded_by_batch_id BIGINT,
    duplicate_of_batch_id BIGINT,
    trigger VARCHAR NOT NULL DEFAULT 'cli',
    flow_run_id VARCHAR
);

-- One row per answered questionnaire item that passed its contract.
CREATE TABLE IF NOT EXISTS response (
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

-- One row per instrument total a source reports itself (a FHIR Observation, a score item)
-- that passed its contract: in range, and equal to its items when they came too.
CREATE TABLE IF NOT EXISTS reported_total (
    clinic_id VARCHAR NOT NULL,
    client_key VARCHAR NOT NULL,
    therapist_id VARCHAR NOT NULL,
    session_date DATE NOT NULL,
    session_number INTEGER NOT NULL,
    instrument VARCHAR NOT NULL,
    total DOUBLE NOT NULL,
    items_total DOUBLE,               -- the score of the same batch's items, when all came
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
    raw_values VARCHAR NOT NULL,      -- JSON of the row as received (client id pseudonymised)
    quarantined_at TIMESTAMPTZ NOT NULL,
    source_ref VARCHAR,               -- line, or Sheet!row for Excel
    instrument VARCHAR,               -- the administration set aside (with all its items)
    rows_set_aside BIGINT             -- canonical rows of that record and instrument set aside
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
"""


def connect(
    settings: Settings | None = None, *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """A raw connection. Prefer :func:`writer` for writes; readers use published data."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    return duckdb.connect(str(settings.warehouse_path), read_only=read_only)


# Columns added after version 1: a warehouse made by an older Tandem gains them in place.
MIGRATIONS = """
ALTER TABLE response ADD COLUMN IF NOT EXISTS source_ref VARCHAR;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS source_ref VARCHAR;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS instrument VARCHAR;
ALTER TABLE quarantine ADD COLUMN IF NOT EXISTS rows_set_aside BIGINT;
"""


def init_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)
    con.execute(MIGRATIONS)
    con.execute(
        "INSERT OR REPLACE INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
    )


@contextmanager
def writer(
    settings: Settings | None = None, timeout: float = 3600
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The single writer: an inter-process lock, then a read-write connection."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    with FileLock(str(settings.lock_path), timeout=timeout):
        con = duckdb.connect(str(settings.warehouse_path))
        try:
            init_schema(con)
            fault_point("after_lock")
            yield con
        finally:
            con.close()


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a batch is one DuckDB transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        fault_point("before_commit")
        con.execute("COMMIT")
        fault_point("after_commit")


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
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _insert_frame")  # noqa: S608


def query_frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """Run a parameterised query and return a Polars frame (via Arrow, no copy of columns)."""
    import polars as pl

    return pl.from_arrow(con.sql(sql, params=params or []).to_arrow_table())
