"""Retention and compaction of the lake, with DuckLake's own calls.

Every commit (each chunk of files, each publish) adds a snapshot and some small Parquet
files. Nightly (the ``sweep`` deployment, or ``tandem maintain``):

1. **clean-up** — ``ducklake_cleanup_old_files`` deletes the data files the *previous* run
   stopped needing (merged away, or only held by snapshots it expired), and
   ``ducklake_delete_orphaned_files`` those a writer killed mid-commit left behind, once they
   are :data:`FILE_GRACE` old (a writer still writing its files is never touched). DuckLake
   1.0 deletes every file scheduled for deletion whatever ``older_than`` says (checked), so
   the clean-up runs *first*: a file dropped tonight is deleted tomorrow night, and a query
   still reading it has a day to finish;
2. **compaction** — ``ducklake_merge_adjacent_files`` merges the small files of each table;
3. **retention** — ``ducklake_expire_snapshots`` drops snapshots (time travel) older than
   ``TANDEM_SNAPSHOT_RETENTION_DAYS``, except the newest publications, which a dashboard may
   still hold open (:data:`KEEP_PUBLICATIONS`), and the newest snapshot.

Each call runs in a transaction of its own with the usual retry: compaction conflicts with a
concurrent delete on the same table, and then simply runs again.
"""

from __future__ import annotations

import datetime as dt

import duckdb

from tandem.core import published, warehouse
from tandem.core.settings import Settings

# Publications kept however old: readers pin the newest; a slow one may hold the one before.
KEEP_PUBLICATIONS = 3
# A file no snapshot names is deleted only once it is this old (a writer may be writing it).
FILE_GRACE = dt.timedelta(hours=6)


def expirable(con: duckdb.DuckDBPyConnection, cutoff: dt.datetime) -> list[int]:
    """Snapshots older than ``cutoff``, minus the kept publications and the newest one."""
    keep = {s.snapshot_id for s in published.publications(con)[:KEEP_PUBLICATIONS]}
    keep.add(warehouse.current_snapshot(con))
    rows = con.execute("SELECT snapshot_id FROM lake.snapshots() WHERE snapshot_time < ? "
                       "ORDER BY snapshot_id", [cutoff]).fetchall()
    return [int(r[0]) for r in rows if int(r[0]) not in keep]


def maintain(settings: Settings, now: dt.datetime | None = None,
             retention_days: int | None = None) -> dict:
    """Compact, expire old snapshots and delete files nobody needs; returns what was done."""
    now = now or dt.datetime.now(dt.UTC)
    days = settings.snapshot_retention_days if retention_days is None else retention_days
    cutoff = now - dt.timedelta(days=days)
    if not warehouse.lake_exists(settings):
        return {"merged_files": 0, "expired_snapshots": 0, "deleted_files": 0}
    with warehouse.writer(settings) as con:
        grace = now - FILE_GRACE
        cleaned = warehouse.run_transaction(
            con, lambda c: c.execute(
                "CALL ducklake_cleanup_old_files('lake', older_than => ?)", [grace]).fetchall(),
            what="delete the files the last upkeep let go")
        orphans = warehouse.run_transaction(
            con, lambda c: c.execute(
                "CALL ducklake_delete_orphaned_files('lake', older_than => ?)", [grace]
            ).fetchall(),
            what="delete files no snapshot names")
        merged = warehouse.run_transaction(
            con, lambda c: c.execute("CALL ducklake_merge_adjacent_files('lake')").fetchall(),
            what="compact the lake's files")
        versions = expirable(con, cutoff)
        if versions:
            warehouse.run_transaction(
                con, lambda c: c.execute(
                    "CALL ducklake_expire_snapshots('lake', versions => ?)", [versions]
                ).fetchall(),
                what="expire old snapshots")
    return {"merged_files": sum(int(r[2]) for r in merged),
            "expired_snapshots": len(versions),
            "deleted_files": len(cleaned) + len(orphans),
            "retention_days": days}
