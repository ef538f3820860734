"""``tandem backup`` and ``tandem restore``: the warehouse and the published data, verified.

A backup is a folder: the files, and ``manifest.json`` with the SHA-256 and size of every
file plus what the warehouse held (batches, responses, schema version) when it was taken.

- The warehouse is copied under the writer lock after a ``CHECKPOINT``, so the copy is a
  consistent state between two batches (no half-loaded batch, no WAL to replay).
- The published snapshot ``CURRENT`` names is copied with ``CURRENT`` (snapshot files are
  immutable once published).
- Site contracts (``data_contracts/``), GX validation reports (``validation/``), the access
  audit log (``audit/``) and the dashboard's ``users.yaml`` (password hashes) come too.
- Not by default: the pseudonym key (keep it in the secrets manager; a backup holding both
  the key and the warehouse lets its reader re-identify clients by brute force over known
  ids) and ``received/`` (the clinics' files as sent, with raw client identifiers). Each
  has an option, with a warning.

Restore goes into an empty ``TANDEM_HOME`` (or over a non-empty one with ``force``): every
file's hash is checked before anything is moved into place, and the restored warehouse is
opened and compared with the manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb
from filelock import FileLock

from tandem import publish
from tandem.settings import Settings, get_settings

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    with dst.open("rb") as fh:
        os.fsync(fh.fileno())


def _warehouse_stats(path: Path) -> dict:
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        out: dict = {}
        if "schema_info" in tables:
            row = con.execute(
                "SELECT value FROM schema_info WHERE key = 'schema_version'"
            ).fetchone()
            out["schema_version"] = row[0] if row else None
        for table in ("batch", "response", "quarantine", "validation_result"):
            if table in tables:
                # table names come from the tuple above, never from input
                out[f"{table}_rows"] = con.execute(
                    f"SELECT count(*) FROM {table}"  # noqa: S608
                ).fetchone()[0]
        if "batch" in tables:
            out["last_batch_id"] = con.execute(
                "SELECT coalesce(max(batch_id), 0) FROM batch"
            ).fetchone()[0]
        return out
    finally:
        con.close()


def backup(
    dest: Path,
    settings: Settings | None = None,
    *,
    include_key: bool = False,
    include_received: bool = False,
    lock_timeout: float = 600,
) -> BackupReport:
    """Copy the warehouse, the current snapshot and the site's files into ``dest``."""
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
        manifest = _write_backup(work, settings, include_key, include_received, lock_timeout)
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)  # a backup folder exists only once it is complete
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    total = sum(f["size"] for f in manifest["files"].values())
    return BackupReport(dest, len(manifest["files"]), total, manifest)


def _write_backup(work: Path, settings: Settings, include_key: bool, include_received: bool,
                  lock_timeout: float) -> dict:
    home = settings.home_dir
    copied: list[str] = []

    def take(src: Path, rel: str) -> None:
        _copy(src, work / rel)
        copied.append(rel)

    warehouse_info: dict = {}
    if settings.warehouse_path.exists():
        # Under the writer lock no batch is half-written; CHECKPOINT folds the WAL in.
        with FileLock(str(settings.lock_path), timeout=lock_timeout):
            con = duckdb.connect(str(settings.warehouse_path))
            try:
                con.execute("CHECKPOINT")
            finally:
                con.close()
            take(settings.warehouse_path, "warehouse.duckdb")
        warehouse_info = _warehouse_stats(work / "warehouse.duckdb")

    snap = None
    for _ in range(5):  # CURRENT may move on while we copy; its files never change
        snap = publish.current(settings)
        if snap is None:
            break
        try:
            take(snap.path, f"published/{snap.path.name}")
            pointer = settings.published_dir / publish.POINTER
            _copy(pointer, work / "published" / publish.POINTER)
            if json.loads((work / "published" / publish.POINTER).read_text())["file"] \
                    != snap.path.name:
                continue
            copied.append(f"published/{publish.POINTER}")
            break
        except FileNotFoundError:
            continue
    else:
        raise BackupError("the published snapshot kept changing during the backup; try again")

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
        from tandem.pseudonym import load_key

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
        "published_version": snap.version if snap else None,
        "includes_pseudonym_key": include_key,
        "includes_received_files": include_received,
        "files": {
            rel: {"sha256": _sha256(work / rel), "size": (work / rel).stat().st_size}
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
        raise BackupError(f"unknown backup format {manifest.get('format_version')!r}")
    problems = []
    for rel, meta in manifest["files"].items():
        path = source.joinpath(*_safe_rel(rel).parts)
        if path.is_symlink() or not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
            problems.append(f"{rel}: content differs from the manifest")
    if problems:
        raise BackupError("the backup is damaged: " + "; ".join(problems[:10]))
    return manifest


def _is_empty_home(home: Path) -> bool:
    """No files at all (the empty folders ``ensure_dirs`` makes do not count)."""
    return not home.exists() or not any(p.is_file() for p in home.rglob("*"))


def restore(source: Path, settings: Settings | None = None, *, force: bool = False,
            lock_timeout: float = 60) -> dict:
    """Restore a verified backup into ``TANDEM_HOME``; refuse a non-empty home unless forced."""
    settings = settings or get_settings()
    home = settings.home_dir
    manifest = verify(source)
    if not _is_empty_home(home) and not force:
        raise BackupError(
            f"{home} is not empty: restore into an empty TANDEM_HOME, or pass --force to "
            "replace its warehouse and published data"
        )
    settings.ensure_dirs()
    stage = home / f".restore-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        for rel, meta in manifest["files"].items():
            parts = _safe_rel(rel).parts
            dst = stage.joinpath(*parts)
            _copy(source.joinpath(*parts), dst)
            if _sha256(dst) != meta["sha256"]:
                raise BackupError(f"{rel} changed while it was copied: restore again")
        if manifest["warehouse"] and (stage / "warehouse.duckdb").exists():
            got = _warehouse_stats(stage / "warehouse.duckdb")
            if got != manifest["warehouse"]:
                raise BackupError(f"the restored warehouse holds {got}, the manifest says "
                                  f"{manifest['warehouse']}")
        with FileLock(str(settings.lock_path), timeout=lock_timeout):
            if force:
                Path(str(settings.warehouse_path) + ".wal").unlink(missing_ok=True)
            pointer = f"published/{publish.POINTER}"
            # CURRENT last: a reader never sees it name a snapshot not yet in place.
            for rel in sorted(manifest["files"], key=lambda r: (r == pointer, r)):
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
