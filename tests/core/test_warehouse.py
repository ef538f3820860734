"""The warehouse as a DuckLake: optimistic commits retried (never lost), per-clinic locks,
batch ids, encryption at rest, and no row of data in the catalog."""

from __future__ import annotations

import sqlite3
import threading

import duckdb
import pytest

from tandem.core import extensions, warehouse
from tandem.core.settings import Settings


def _other_process(settings: Settings) -> duckdb.DuckDBPyConnection:
    """A second DuckDB instance on the same lake: what another process would have."""
    con = extensions.connect(settings.extension_dir)
    con.execute(warehouse._attach_sql(settings, "lake", create=False))
    con.execute("USE lake")
    return con


def test_a_conflicting_commit_is_retried_whole_and_sees_the_winner(tandem_home):
    """Two loads of one clinic at once: the second's commit conflicts on the clinic's lock,
    and its work runs again, now seeing what the first committed (so it is not lost and
    not duplicated)."""
    with warehouse.writer(tandem_home) as con:
        warehouse.ensure_clinic_locks(con, ["northside"])
    other = _other_process(tandem_home)
    seen: list[int] = []
    started, go = threading.Event(), threading.Event()

    def work(c: duckdb.DuckDBPyConnection) -> None:
        warehouse.lock_clinics(c, ["northside"])
        seen.append(c.execute("SELECT count(*) FROM schema_info WHERE key = 'probe'")
                    .fetchone()[0])
        if len(seen) == 1:  # first attempt: let the other process commit meanwhile
            started.set()
            go.wait(30)
        if seen[-1] == 0:
            c.execute("INSERT INTO schema_info VALUES ('probe', 'mine')")

    def rival() -> None:
        started.wait(30)
        other.execute("BEGIN TRANSACTION")
        warehouse.lock_clinics(other, ["northside"])
        other.execute("INSERT INTO schema_info VALUES ('probe', 'theirs')")
        other.execute("COMMIT")
        go.set()

    t = threading.Thread(target=rival)
    t.start()
    with warehouse.writer(tandem_home) as con:
        warehouse.run_transaction(con, work, what="the probe")
    t.join()
    other.close()
    assert seen[0] == 0 and seen[-1] == 1 and len(seen) >= 2  # retried, saw the winner
    with warehouse.reader(tandem_home) as con:
        assert con.execute("SELECT value FROM schema_info WHERE key = 'probe'").fetchall() == [
            ("theirs",)]


def test_loads_of_different_clinics_do_not_wait_for_each_other(tandem_home):
    """The lock is per clinic: another clinic's commit in between is no conflict (the
    catalog decides; on SQLite any two overlapping commits conflict, so this holds on a
    PostgreSQL catalog: tests/e2e/test_scaled_out.py). Here: the locks exist, hold one row,
    and a missing lock is an error, never a silent no-op."""
    with warehouse.writer(tandem_home) as con:
        warehouse.ensure_clinic_locks(con, ["northside", "east-gate"])
        warehouse.run_transaction(con, lambda c: warehouse.lock_clinics(c, ["east-gate"]),
                                  what="lock")
        with pytest.raises(warehouse._MissingLocks):
            warehouse.run_transaction(con, lambda c: warehouse.lock_clinics(c, ["nowhere"]),
                                      what="lock")
        with pytest.raises(ValueError):
            warehouse._lock_table('x"; DROP TABLE batch_record; --')


def test_batch_ids_are_unique_across_processes(tandem_home):
    ids: list[int] = []
    with warehouse.writer(tandem_home) as con:
        ids += warehouse.allocate_batch_ids(con, 3)
    other = _other_process(tandem_home)
    ids += warehouse.allocate_batch_ids(other, 4)
    other.close()
    with warehouse.writer(tandem_home) as con:
        ids += warehouse.allocate_batch_ids(con, 2)
    assert ids == list(range(1, 10))


def test_data_files_are_encrypted_and_the_catalog_holds_no_rows(tandem_home):
    secret = "a-value-that-must-not-appear-in-clear"
    with warehouse.writer(tandem_home) as con:
        warehouse.run_transaction(con, lambda c: c.execute(
            "INSERT INTO schema_info VALUES ('probe', ?)", [secret]), what="write")
    files = [p for p in tandem_home.lake_dir.rglob("*.parquet")]
    assert files
    for f in files:
        data = f.read_bytes()
        assert data[:4] == b"PARE" and data[-4:] == b"PARE", f  # Parquet, encrypted
        assert secret.encode() not in data
    con = sqlite3.connect(tandem_home.lake_dir / "catalog.sqlite")
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        inlined = [t for t in tables if t.startswith("ducklake_inlined_data")]
        assert all(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] == 0  # noqa: S608 - table names come from the snapshot or the test itself
                   for t in inlined)
        keys = con.execute("SELECT count(*) FROM ducklake_data_file "
                           "WHERE encryption_key IS NOT NULL").fetchone()[0]
        assert keys == len(files)  # what docs/security.md says: the keys are in the catalog
    finally:
        con.close()


def test_time_travel_reads_the_lake_as_a_snapshot_left_it(tandem_home):
    with warehouse.writer(tandem_home) as con:
        before = warehouse.current_snapshot(con)
        warehouse.run_transaction(con, lambda c: c.execute(
            "INSERT INTO schema_info VALUES ('later', 'x')"), what="write")
    with warehouse.reader(tandem_home, snapshot=before) as con:
        assert con.execute("SELECT count(*) FROM schema_info WHERE key = 'later'"
                           ).fetchone()[0] == 0
    with warehouse.reader(tandem_home) as con:
        assert con.execute("SELECT count(*) FROM schema_info WHERE key = 'later'"
                           ).fetchone()[0] == 1


def test_a_catalog_url_must_name_a_known_catalog(tmp_path):
    with pytest.raises(ValueError, match="TANDEM_CATALOG_URL"):
        warehouse.catalog_spec(Settings(home=tmp_path, catalog_url="mysql://x"))
    assert warehouse.catalog_spec(Settings(home=tmp_path, catalog_url="postgresql://u@h/db")
                                  ) == "postgres:postgresql://u@h/db"
