"""``tandem backup`` and ``tandem restore``: the warehouse and the published marts, verified.

A backup is a folder: a DuckLake of its own (``lake/``: a SQLite catalog and Parquet data,
encrypted like the source) holding a copy of every table as of one snapshot of the source,
the site's files, and ``manifest.json`` with the SHA-256 and size of every file plus what the
warehouse held (row counts, the publication) when it was taken.

- The copy is DuckDB's ``COPY FROM DATABASE`` from the source lake attached read-only *at* one
  snapshot: a consistent state between two commits (no half-loaded batch), whatever catalog
  the source has (SQLite or PostgreSQL) and while writers keep committing. The marts in it
  are those of the newest publication at that snapshot, which restore publishes again.
- Snapshot history (time travel) is not copied: a backup is the state, not the log.
- Site contracts (``data_contracts/``), GX validation reports (``validation/``), the access
  audit log (``audit/``) and the dashboard's ``users.yaml`` (password hashes) come too.
- Not by default: the pseudonym key (keep it in the secrets manager; a backup holding both
  the key and the warehouse lets its reader re-identify clients by brute force over known
  ids) and ``received/`` (the clinics' files as sent, with raw client identifiers). Each
  has an option, with a warning.

Restore goes into an empty ``TANDEM_HOME`` (or over a non-empty one with ``force``): every
file's hash is checked before anything is restored, the backup's lake is copied into a new
lake, the newest publication is published again, and the restored lake is compared with the
manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from tandem.core import published, warehouse
from tandem.core.files import sha256_file
from tandem.core.settings import Settings, get_settings

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: a DuckLake copy (1: a DuckDB warehouse file and a snapshot file)
# Folders of TANDEM_HOME copied as they are (when present).
PLAIN_DIRS = ("data_contracts", "validation", "audit")
PLAIN_FILES = ("users.yaml",)
KEY_REL = "secrets/pseudonym.key"


class BackupError(Exception):
    """A backup or restore that cannot be done safely; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    manifest: dict


def _digest(path: Path) -> str:
    return sha256_file(path)[0]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    with dst.open("rb") as fh:
        os.fsync(fh.fileno())


STATS_TABLES = ("batch", "response", "reported_total", "quarantine", "validation_result")
BACKUP_LAKE = "lake"


def _lake_stats(con: duckdb.DuckDBPyConnection, db: str) -> dict:
    """What a lake holds, to compare a restore with its backup (tables by fixed names)."""
    out: dict = {}
    out["schema_version"] = con.execute(
        f"SELECT max(value) FROM {db}.main.schema_info WHERE key = 'schema_version'"  # noqa: S608 - db is our alias
    ).fetchone()[0]
    for table in STATS_TABLES:
        out[f"{table}_rows"] = con.execute(
            f"SELECT count(*) FROM {db}.main.{table}").fetchone()[0]  # noqa: S608 - table names from a fixed tuple
    out["last_batch_id"] = con.execute(
        f"SELECT coalesce(max(batch_id), 0) FROM {db}.main.batch_record").fetchone()[0]  # noqa: S608 - db is our alias
    marts = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
        [db, published.SCHEMA]).fetchone()[0]
    out["mart_tables"] = int(marts)
    return out


def _attach_backup_lake(con: duckdb.DuckDBPyConnection, folder: Path, alias: str,
                        encrypted: bool, create: bool) -> None:
    catalog, data = folder / "lake" / "catalog.sqlite", folder / "lake" / "data"
    opts = [f"DATA_PATH '{data}/'"]
    if create:
        data.mkdir(parents=True, exist_ok=True)
        if encrypted:
            opts.append("ENCRYPTED")
    else:
        opts += ["OVERRIDE_DATA_PATH true", "CREATE_IF_NOT_EXISTS false"]
    con.execute(f"ATTACH 'ducklake:sqlite:{catalog}' AS {alias} ({', '.join(opts)})")
    if create and encrypted:  # no row of it in the catalog in plain text
        con.execute(f"CALL {alias}.set_option('data_inlining_row_limit', 0)")


def backup(
    dest: Path,
    settings: Settings | None = None,
    *,
    include_key: bool = False,
    include_received: bool = False,
) -> BackupReport:
    """Copy the warehouse (one snapshot), its newest publication and the site's files."""
    settings = settings or get_settings()
    home = settings.home_dir
    dest = dest.resolve()
    if dest == home or home in dest.parents:
        raise BackupError(f"the backup folder {dest} must be outside TANDEM_HOME ({home})")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new folder")
    work = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
    work.mkdir(parents=True)
    try:
        manifest = _write_backup(work, settings, include_key, include_received)
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)  # a backup folder exists only once it is complete
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    total = sum(f["size"] for f in manifest["files"].values())
    return BackupReport(dest, len(manifest["files"]), total, manifest)


def _copy_lake(settings: Settings, work: Path) -> tuple[dict, dict | None]:
    """The source lake at one snapshot, copied into a new lake under ``work/lake``; returns
    the copy's statistics and the newest publication it holds (its commit information)."""
    with warehouse.reader(settings) as con:
        snapshot = warehouse.current_snapshot(con)
        rows = con.execute(
            "SELECT snapshot_id, commit_extra_info FROM lake.snapshots() WHERE commit_message = ? "
            "AND snapshot_id <= ? ORDER BY snapshot_id DESC LIMIT 1",
            [published.MESSAGE, snapshot]).fetchall()
    alias = f"backup_{uuid.uuid4().hex[:8]}"
    with warehouse.reader(settings, snapshot=snapshot) as con:
        _attach_backup_lake(con, work, alias, settings.lake_encrypted, create=True)
        try:
            con.execute(f"COPY FROM DATABASE {warehouse.snapshot_alias(snapshot)} TO {alias}")
            stats = _lake_stats(con, alias)
        finally:
            con.execute(f"DETACH {alias}")
    stats["snapshot"] = snapshot
    pub = {**json.loads(rows[0][1] or "{}"), "snapshot_id": rows[0][0]} if rows else None
    return stats, pub


def _write_backup(work: Path, settings: Settings, include_key: bool,
                  include_received: bool) -> dict:
    home = settings.home_dir
    copied: list[str] = []

    def take(src: Path, rel: str) -> None:
        _copy(src, work / rel)
        copied.append(rel)

    warehouse_info: dict = {}
    publication = None
    if warehouse.lake_exists(settings):
        warehouse_info, publication = _copy_lake(settings, work)
        copied += [p.relative_to(work).as_posix() for p in sorted((work / "lake").rglob("*"))
                   if p.is_file()]

    for name in PLAIN_DIRS + (("received",) if include_received else ()):
        folder = home / name
        if folder.is_dir():
            for f in sorted(folder.rglob("*")):
                if f.is_file() and not f.is_symlink() and not f.name.endswith(".tmp"):
                    take(f, f.relative_to(home).as_posix())
    for name in PLAIN_FILES:
        if (home / name).is_file():
            take(home / name, name)
    if include_key:
        from tandem.core.pseudonym import load_key

        key = load_key(settings)
        (work / "secrets").mkdir(mode=0o700)
        key_path = work / KEY_REL
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        copied.append(KEY_REL)

    manifest = {
        "format_version": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "source_home": str(home),
        "warehouse": warehouse_info,
        "publication": publication,
        "published_version": publication["version"] if publication else None,
        "encrypted": settings.lake_encrypted,
        "includes_pseudonym_key": include_key,
        "includes_received_files": include_received,
        "files": {
            rel: {"sha256": _digest(work / rel), "size": (work / rel).stat().st_size}
            for rel in sorted(copied)
        },
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def _safe_rel(rel: str) -> PurePosixPath:
    """A manifest path that stays inside its folder (no absolute path, no ``..``)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or not p.parts or any(part in ("", ".", "..") for part in p.parts) \
            or "\\" in rel or "\x00" in rel:
        raise BackupError(f"the manifest names an unsafe path {rel!r}: refusing to restore")
    return p


def verify(source: Path) -> dict:
    """The manifest of a backup folder, after checking every file's size and SHA-256."""
    source = source.resolve()
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BackupError(f"{source} has no {MANIFEST}: not a Tandem backup") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackupError(f"{source / MANIFEST} is not valid JSON: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"unknown backup format {manifest.get('format_version')!r} "
                          f"(this Tandem reads format {FORMAT_VERSION})")
    problems = []
    for rel, meta in manifest["files"].items():
        path = source.joinpath(*_safe_rel(rel).parts)
        if path.is_symlink() or not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != meta["size"] or _digest(path) != meta["sha256"]:
            problems.append(f"{rel}: content differs from the manifest")
    if problems:
        raise BackupError("the backup is damaged: " + "; ".join(problems[:10]))
    return manifest


def _is_empty_home(settings: Settings) -> bool:
    """No files at all (the empty folders ``ensure_dirs`` makes do not count), and, with a
    catalog server, no warehouse tables in it."""
    home = settings.home_dir
    if home.exists() and any(p.is_file() for p in home.rglob("*")):
        return False
    if settings.catalog_url and warehouse.lake_exists(settings):
        try:
            with warehouse.reader(settings) as con:
                return not con.execute("SELECT count(*) FROM batch_record").fetchone()[0]
        except duckdb.Error:
            return True
    return True


def restore(source: Path, settings: Settings | None = None, *, force: bool = False) -> dict:
    """Restore a verified backup into ``TANDEM_HOME``; refuse a non-empty home unless forced."""
    settings = settings or get_settings()
    home = settings.home_dir
    manifest = verify(source)
    if not _is_empty_home(settings) and not force:
        raise BackupError(
            f"{home} is not empty: restore into an empty TANDEM_HOME, or pass --force to "
            "replace its warehouse and published data"
        )
    if force and settings.catalog_url:
        raise BackupError("--force cannot empty a catalog server: restore into a new catalog "
                          "(TANDEM_CATALOG_URL) instead")
    settings.ensure_dirs()
    source = source.resolve()
    if manifest["warehouse"]:
        if force:  # the embedded lake is replaced whole
            warehouse.close_engines(settings)
            shutil.rmtree(settings.lake_dir, ignore_errors=True)
            settings.lake_dir.mkdir(parents=True)
        _restore_lake(source, settings, manifest)
    stage = home / f".restore-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        for rel, meta in manifest["files"].items():
            if rel.startswith("lake/"):
                continue
            parts = _safe_rel(rel).parts
            dst = stage.joinpath(*parts)
            _copy(source.joinpath(*parts), dst)
            if _digest(dst) != meta["sha256"]:
                raise BackupError(f"{rel} changed while it was copied: restore again")
        for rel in sorted(manifest["files"]):
            if rel.startswith("lake/"):
                continue
            parts = _safe_rel(rel).parts
            dst = home.joinpath(*parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage.joinpath(*parts), dst)
        if (home / KEY_REL).exists():
            os.chmod(home / "secrets", 0o700)
            os.chmod(home / KEY_REL, 0o600)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _restore_lake(source: Path, settings: Settings, manifest: dict) -> None:
    """The backup's lake copied into a new lake, its publication published again."""
    con = warehouse._new_connection(settings)
    try:
        _attach_backup_lake(con, source, "bak", bool(manifest.get("encrypted")), create=False)
        con.execute(warehouse._attach_sql(settings, warehouse.LAKE, create=True))
        if settings.lake_encrypted:
            con.execute("CALL lake.set_option('data_inlining_row_limit', 0)")
        con.execute(f"COPY FROM DATABASE bak TO {warehouse.LAKE}")
        con.execute("ALTER TABLE lake.main.response_row SET PARTITIONED BY (clinic_id)")
        got = _lake_stats(con, warehouse.LAKE)
        want = {k: v for k, v in manifest["warehouse"].items() if k != "snapshot"}
        if got != want:
            raise BackupError(f"the restored warehouse holds {got}, the manifest says {want}")
        pub = manifest.get("publication")
        if pub:
            con.execute(f"USE {warehouse.LAKE}")

            def mark(c: duckdb.DuckDBPyConnection) -> None:
                c.execute("INSERT INTO lake.marts.publication (version, published_at, tables, "
                          "info) VALUES (?, now(), ?, ?)",
                          [pub.get("version"), json.dumps(pub.get("tables") or {}),
                           json.dumps({"restored_from": str(source)})])

            warehouse.run_transaction(con, mark, what="publish the restored marts",
                                      message=(published.MESSAGE, {**pub, "restored": True}))
    finally:
        con.close()
