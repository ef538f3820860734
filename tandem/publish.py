"""Publishing marts for readers, atomically.

``aggregate`` writes every mart into a new DuckDB file under ``published/`` and then
swaps a small ``CURRENT`` pointer with an atomic rename. Readers open the file the
pointer names, read-only: they never touch the warehouse, so they keep serving while a
flow writes, and a reader sees either the old snapshot or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from tandem.settings import Settings, get_settings

POINTER = "CURRENT"
KEEP_SNAPSHOTS = 3


@dataclass(frozen=True)
class Snapshot:
    version: str
    path: Path
    published_at: dt.datetime
    tables: dict[str, int]


def publish(
    marts: dict[str, pl.DataFrame], settings: Settings | None = None, meta: dict | None = None
) -> Snapshot:
    """Write every mart to a fresh snapshot file, then point CURRENT at it."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    now = dt.datetime.now(dt.UTC)
    version = now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
    path = settings.published_dir / f"marts-{version}.duckdb"
    tmp = path.with_suffix(".duckdb.tmp")
    tables = {}
    con = duckdb.connect(str(tmp))
    try:
        for name, frame in marts.items():
            con.register("_frame", frame.to_arrow())
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _frame')  # noqa: S608 - name is ours
            con.unregister("_frame")
            tables[name] = frame.height
        info = {"version": version, "published_at": now.isoformat(), **(meta or {})}
        con.execute("CREATE TABLE publish_info (key VARCHAR, value VARCHAR)")
        con.executemany(
            "INSERT INTO publish_info VALUES (?, ?)", [(k, str(v)) for k, v in info.items()]
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, path)
    _fsync_dir(settings.published_dir)
    pointer = settings.published_dir / POINTER
    pointer_tmp = settings.published_dir / f".{POINTER}.{version}.tmp"
    pointer_tmp.write_text(
        json.dumps(
            {
                "version": version,
                "file": path.name,
                "published_at": now.isoformat(),
                "tables": tables,
            }
        ),
        encoding="utf-8",
    )
    os.replace(pointer_tmp, pointer)
    _fsync_dir(settings.published_dir)
    _prune(settings.published_dir, keep=path.name)
    return Snapshot(version, path, now, tables)


def current(settings: Settings | None = None) -> Snapshot | None:
    """The snapshot CURRENT points at, or None before the first publish."""
    settings = settings or get_settings()
    pointer = settings.published_dir / POINTER
    if not pointer.exists():
        return None
    info = json.loads(pointer.read_text(encoding="utf-8"))
    return Snapshot(
        version=info["version"],
        path=settings.published_dir / info["file"],
        published_at=dt.datetime.fromisoformat(info["published_at"]),
        tables=info.get("tables", {}),
    )


def open_current(
    settings: Settings | None = None,
) -> tuple[Snapshot, duckdb.DuckDBPyConnection] | None:
    snap = current(settings)
    if snap is None:
        return None
    return snap, duckdb.connect(str(snap.path), read_only=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune(directory: Path, keep: str) -> None:
    """Keep the newest few snapshots (a reader may still hold an older one open)."""
    snaps = sorted(directory.glob("marts-*.duckdb"))
    for old in snaps[:-KEEP_SNAPSHOTS]:
        if old.name != keep:
            old.unlink(missing_ok=True)
    for stale in directory.glob("marts-*.duckdb.tmp"):
        if stale.name != keep + ".tmp":
            stale.unlink(missing_ok=True)
