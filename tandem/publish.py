"""Publishing marts for readers, atomically.

``aggregate`` writes every mart into a new DuckDB file under ``published/`` and then
swaps a small ``CURRENT`` pointer with an atomic rename. Readers open the file the
pointer names, read-only: they never touch the warehouse, so they keep serving while a
flow writes, and a reader sees either the old snapshot or the new one, never a mix.

Incremental publish (:class:`RowPatch`): when only some clients changed, the new file starts
as a copy of the CURRENT snapshot; in the row-level marts named by the patch only those
clients' rows are replaced (delete + insert), every other mart is rewritten whole. The copy
is private to the publisher until the same atomic swap, so readers are unaffected. A patch
is applied only if CURRENT was published from exactly the state the patch starts from
(``lineage``); otherwise the snapshot is written whole, as before.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from tandem.faults import fault_point
from tandem.settings import Settings, get_settings
from tandem.warehouse import registered

POINTER = "CURRENT"
KEEP_SNAPSHOTS = 3
# A ``.tmp`` snapshot older than this was left by a publish that died (kill, power cut);
# a younger one may belong to a publish still running in another process.
STALE_TMP_SECONDS = 3600


@dataclass(frozen=True)
class Snapshot:
    version: str
    path: Path
    published_at: dt.datetime
    tables: dict[str, int]
    patched: bool = False  # written by patching the previous snapshot (RowPatch)


@dataclass(frozen=True)
class RowPatch:
    """Publish by patching CURRENT: only ``clients``' rows of ``tables`` differ from it.

    ``lineage`` names what this publish is built from (state version and mart parameters)
    and is recorded with the snapshot; the patch is applied only when CURRENT's lineage is
    ``base`` (None: never, write whole). ``clients`` has ``clinic_id`` and ``client_key``;
    every table in ``tables`` must have both columns."""

    lineage: str
    base: str | None
    clients: pl.DataFrame
    tables: frozenset[str] = field(default_factory=frozenset)


def publish(
    marts: dict[str, pl.DataFrame], settings: Settings | None = None, meta: dict | None = None,
    patch: RowPatch | None = None,
) -> Snapshot:
    """Write the marts to a fresh snapshot file (whole, or as a patched copy of CURRENT),
    then point CURRENT at it."""
    settings = settings or get_settings()
    settings.ensure_dirs()
    now = dt.datetime.now(dt.UTC)
    version = now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]
    path = settings.published_dir / f"marts-{version}.duckdb"
    tmp = path.with_suffix(".duckdb.tmp")
    tables = {}
    pointer = settings.published_dir / POINTER
    pointer_tmp = settings.published_dir / f".{POINTER}.{version}.tmp"
    try:
        patched = patch is not None and _copy_base(settings.published_dir, patch, tmp)
        con = duckdb.connect(str(tmp))
        try:
            if patched:
                _write_patched(con, marts, patch)
            else:
                for name, frame in marts.items():
                    _create(con, name, frame)
            tables = {name: frame.height for name, frame in marts.items()}
            info = {"version": version, "published_at": now.isoformat(), **(meta or {})}
            if patch is not None:
                info["lineage"] = patch.lineage
            con.execute("CREATE TABLE publish_info (key VARCHAR, value VARCHAR)")
            con.executemany(
                "INSERT INTO publish_info VALUES (?, ?)", [(k, str(v)) for k, v in info.items()]
            )
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
        _fsync_dir(settings.published_dir)
        fault_point("publish_after_snapshot")
        record = {"version": version, "file": path.name, "published_at": now.isoformat(),
                  "tables": tables}
        if patch is not None:
            record["lineage"] = patch.lineage
        payload = json.dumps(record).encode("utf-8")
        fd = os.open(pointer_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)  # the pointer's bytes are on disk before the rename makes them CURRENT
        finally:
            os.close(fd)
        os.replace(pointer_tmp, pointer)
    except BaseException:
        # A failed publish (disk full, I/O error) leaves CURRENT as it was and gives the
        # space of its half-written files back; the new snapshot is never pointed at.
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal"), pointer_tmp):
            leftover.unlink(missing_ok=True)
        if not (pointer.exists() and path.name in pointer.read_text(encoding="utf-8")):
            path.unlink(missing_ok=True)
        raise
    _fsync_dir(settings.published_dir)
    fault_point("publish_after_pointer")
    _prune(settings.published_dir, keep=path.name)
    return Snapshot(version, path, now, tables, patched)


def _create(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    with registered(con, "_frame", frame):
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _frame')  # noqa: S608 - name is ours


def _copy_base(directory: Path, patch: RowPatch, tmp: Path) -> bool:
    """Copy the CURRENT snapshot to ``tmp`` if it is the patch's base; False otherwise (or if
    it was pruned meanwhile by another publisher)."""
    pointer = directory / POINTER
    if patch.base is None:
        return False
    try:
        info = json.loads(pointer.read_text(encoding="utf-8"))
        if info.get("lineage") != patch.base:
            return False
        shutil.copyfile(directory / info["file"], tmp)
    except (OSError, ValueError, KeyError):
        tmp.unlink(missing_ok=True)
        return False
    return True


def _columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {relation}").fetchall()]  # noqa: S608


def _write_patched(
    con: duckdb.DuckDBPyConnection, marts: dict[str, pl.DataFrame], patch: RowPatch
) -> None:
    """In a copy of the base snapshot: replace the patch clients' rows of the patch tables
    (when the columns and types are unchanged), rewrite every other mart whole, drop
    tables that are no longer published."""
    existing = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}
    keys = ["clinic_id", "client_key"]
    with registered(con, "_clients", patch.clients.select(keys).unique()):
        for name in existing - set(marts):
            con.execute(f'DROP TABLE "{name}"')
        for name, frame in marts.items():
            quoted = f'"{name}"'
            with registered(con, "_frame", frame.head(0)):
                same = (name in patch.tables and name in existing
                        and _columns(con, quoted) == _columns(con, "_frame"))
            if not same:
                con.execute(f"DROP TABLE IF EXISTS {quoted}")
                _create(con, name, frame)
                continue
            match = f"{quoted}.clinic_id = c.clinic_id AND {quoted}.client_key = c.client_key"
            con.execute(f"DELETE FROM {quoted} USING _clients c WHERE {match}")  # noqa: S608
            rows = frame.join(patch.clients.select(keys).unique(), on=keys, how="semi")
            if rows.height:
                with registered(con, "_frame", rows):
                    con.execute(f"INSERT INTO {quoted} SELECT * FROM _frame")  # noqa: S608


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


def query_snapshot(snap: Snapshot, sql: str, params: list | None = None) -> list[tuple]:
    """The rows of one query on a published snapshot, opened read-only and closed again
    (a reader holds no connection between reads, so old snapshots can be pruned)."""
    con = duckdb.connect(str(snap.path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


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
    cutoff = time.time() - STALE_TMP_SECONDS
    for pattern in ("marts-*.duckdb.tmp", "marts-*.duckdb.tmp.wal", f".{POINTER}.*.tmp"):
        for stale in directory.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                if stale.stat().st_mtime < cutoff:
                    stale.unlink(missing_ok=True)
