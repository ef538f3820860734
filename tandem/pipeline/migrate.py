"""``tandem migrate``: a schema-v2 warehouse (one DuckDB file) into the lake, once.

Tandem 0.1 kept the warehouse in ``TANDEM_HOME/warehouse.duckdb`` and the published marts in
``published/marts-*.duckdb`` files named by ``published/CURRENT``. This reads both, writes
every batch, answer, total, quarantine row and validation result into the lake (batch ids
kept; a superseded batch becomes a ``batch_supersession`` row), publishes the marts of the
CURRENT snapshot again (so the dashboard shows what it showed), and renames the old files
``*.migrated`` (kept until the operator deletes them). The next aggregate rebuilds the
per-client state from the migrated rows.

Tandem 0.1 ran DuckDB 2.0, whose files DuckDB 1.5 (the newest with the lake's extensions)
cannot open. So the old files are read by a helper process running the DuckDB release that
wrote them (installed once from the package registry into Tandem's cache), which exports
them as Parquet; Parquet is what DuckDB of every version reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from tandem.core import published, warehouse
from tandem.core.settings import Settings

# The DuckDB that wrote schema-v2 warehouses (Tandem 0.1's constraints.txt).
V2_DUCKDB = "2.0.0"
V2_TABLES = ("schema_info", "batch", "response", "reported_total", "quarantine",
             "validation_result")

_EXPORT = r"""
import sys, duckdb
src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect(src, read_only=True)
con.execute(f"EXPORT DATABASE '{out}' (FORMAT parquet)")
con.close()
"""


class MigrationError(Exception):
    """The migration cannot be done safely; the message says why and what to do."""


@dataclass(frozen=True)
class MigrationReport:
    batches: int
    responses: int
    quarantine: int
    published_version: str | None
    kept: list[Path]


def _export(path: Path, out: Path, settings: Settings, reader_version: str) -> None:
    """``EXPORT DATABASE`` of ``path`` into ``out`` (Parquet), by this process's DuckDB when
    it can read the file, else by the DuckDB release that wrote it in a helper process."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "version" not in str(exc):
            raise
        _export_with(path, out, settings, reader_version)
        return
    try:
        con.execute(f"EXPORT DATABASE '{out}' (FORMAT parquet)")
    finally:
        con.close()


def reader_dir(settings: Settings, version: str) -> Path:
    """The old DuckDB's install, one per Python version: its compiled module is built for
    one interpreter, and another would import this environment's ``_duckdb`` instead."""
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    return settings.extension_dir.parent / f"duckdb-{version}-{py}"


def _export_with(path: Path, out: Path, settings: Settings, version: str) -> None:
    target = reader_dir(settings, version)
    if not (target / "duckdb").is_dir():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--target", str(target), f"duckdb=={version}"],
            capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise MigrationError(
                f"{path.name} was written by DuckDB {version}, which this Tandem reads through "
                f"a helper, and installing DuckDB {version} for it failed: "
                f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}. Install it by "
                f"hand (pip install --target {target} duckdb=={version}) and run again.")
    proc = subprocess.run([sys.executable, "-c", _EXPORT, str(path), str(out)],
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise MigrationError(f"{path.name} could not be read by DuckDB {version}: "
                             f"{proc.stderr.strip().splitlines()[-1:]}")


def _read(folder: Path, table: str) -> pl.DataFrame | None:
    path = folder / f"{table}.parquet"
    return pl.read_parquet(path) if path.exists() else None


def migrate(settings: Settings, reader_version: str = V2_DUCKDB) -> MigrationReport:
    """Move a schema-v2 home's warehouse and published marts into the lake."""
    old = settings.legacy_warehouse_path
    if not old.exists():
        raise MigrationError(f"there is no schema-v2 warehouse to migrate ({old} is missing)")
    with warehouse.writer(settings) as con:
        if con.execute("SELECT count(*) FROM batch_record").fetchone()[0]:
            raise MigrationError("the lake already holds batches: migrate into a new lake "
                                 "(an empty TANDEM_CATALOG_URL, or a home without lake/)")
    with tempfile.TemporaryDirectory(prefix="tandem-migrate-") as tmp:
        wh = Path(tmp) / "warehouse"
        _export(old, wh, settings, reader_version)
        frames = {t: _read(wh, t) for t in V2_TABLES}
        if frames["batch"] is None:
            raise MigrationError(f"{old} holds no batch table: not a Tandem warehouse")
        version = _schema_version(frames["schema_info"])
        if version != "2":
            raise MigrationError(f"{old} is schema version {version}; this migrates version 2")
        marts, pub_info = _published(settings, Path(tmp) / "published", reader_version)
        report = _load(settings, frames, marts, pub_info)
    kept = []
    for path in (old, old.with_name(old.name + ".wal"), settings.home_dir / "published"):
        if path.exists():
            target = path.with_name(path.name + ".migrated")
            path.rename(target)
            kept.append(target)
    return MigrationReport(report["batches"], report["responses"], report["quarantine"],
                           report["version"], kept)


def _schema_version(info: pl.DataFrame | None) -> str | None:
    if info is None:
        return None
    rows = info.filter(pl.col("key") == "schema_version")["value"].to_list()
    return rows[0] if rows else None


def _published(settings: Settings, out: Path, reader_version: str
               ) -> tuple[dict[str, pl.DataFrame], dict | None]:
    """The marts and publish facts of the old CURRENT snapshot (none before a publish)."""
    folder = settings.home_dir / "published"
    pointer = folder / "CURRENT"
    if not pointer.exists():
        return {}, None
    current = json.loads(pointer.read_text(encoding="utf-8"))
    _export(folder / current["file"], out, settings, reader_version)
    marts = {p.stem: pl.read_parquet(p) for p in sorted(out.glob("*.parquet"))}
    info = marts.pop("publish_info", None)
    facts = dict(zip(info["key"], info["value"], strict=True)) if info is not None else {}
    return marts, {**facts, "version": current["version"],
                   "published_at": current["published_at"]}


def _load(settings: Settings, frames: dict[str, pl.DataFrame | None],
          marts: dict[str, pl.DataFrame], pub: dict | None) -> dict:
    batch = frames["batch"]
    assert batch is not None
    record = batch.drop("superseded_by_batch_id").with_columns(
        pl.when(pl.col("status") == "superseded").then(pl.lit("loaded"))
        .otherwise(pl.col("status")).alias("status"))
    # a superseded *delivery* (an old version arriving late) stays status superseded
    late = batch.filter((pl.col("status") == "superseded")
                        & pl.col("superseded_by_batch_id").is_null())["batch_id"]
    record = record.with_columns(
        pl.when(pl.col("batch_id").is_in(late.implode())).then(pl.lit("superseded"))
        .otherwise(pl.col("status")).alias("status"))
    supersession = batch.filter(pl.col("superseded_by_batch_id").is_not_null()).select(
        "batch_id", "superseded_by_batch_id", pl.col("finished_at").alias("superseded_at"))
    clinics = sorted(c for c in batch["clinic_id"].drop_nulls().unique().to_list())
    info = frames["schema_info"]
    keep = info.filter(pl.col("key") != "schema_version") if info is not None else None
    next_id = int(batch["batch_id"].max() or 0) + 1

    with warehouse.writer(settings) as con:
        warehouse.ensure_clinic_locks(con, [c for c in clinics if _is_clinic_id(c)])

        def write(c: duckdb.DuckDBPyConnection) -> None:
            warehouse.insert_frame(c, "batch_record", record)
            warehouse.insert_frame(c, "batch_supersession", supersession)
            for old, new in (("response", "response_row"),
                             ("reported_total", "reported_total_row"),
                             ("quarantine", "quarantine"),
                             ("validation_result", "validation_result")):
                if frames[old] is not None:
                    warehouse.insert_frame(c, new, frames[old])
            if keep is not None and keep.height:
                warehouse.insert_frame(c, "schema_info", keep)
            c.execute("UPDATE batch_id_counter SET next_id = ?", [next_id])

        warehouse.run_transaction(con, write, what="migrate the warehouse",
                                  message=("migrate", {"from_schema": 2, "batches": batch.height}))
    version = None
    if marts and pub is not None:
        snap = published.publish(marts, settings, meta={
            k: v for k, v in pub.items() if k not in ("version", "published_at")}
            | {"migrated_from": pub["version"]})
        version = snap.version
    return {"batches": batch.height,
            "responses": 0 if frames["response"] is None else frames["response"].height,
            "quarantine": 0 if frames["quarantine"] is None else frames["quarantine"].height,
            "version": version}


def _is_clinic_id(value: str) -> bool:
    try:
        warehouse._lock_table(value)
    except ValueError:
        return False
    return True
