"""The ``aggregate`` flow: warehouse rows to published marts, in one atomic publish.

It reads the validated responses and the audit tables under the writer lock (so it sees
a consistent warehouse, never a half-written batch), releases the lock, builds every
mart with the pure transforms, and publishes them as one new snapshot that readers
switch to at once (tandem.publish).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tandem import publish, warehouse
from tandem.contracts import load_instruments
from tandem.settings import Settings, get_settings
from transforms.marts import MartParams, build_marts

# Audit tables copied into every snapshot for the quality team's pages.
AUDIT_TABLES = {
    "audit_batch": "SELECT * FROM batch ORDER BY batch_id",
    "audit_quarantine": "SELECT * FROM quarantine ORDER BY batch_id, source_row, rule",
    "audit_validation_result": "SELECT * FROM validation_result ORDER BY batch_id, rule",
}


@task(name="read-warehouse", cache_policy=NO_CACHE)
def read_warehouse(settings: Settings) -> tuple[pl.DataFrame, dict[str, pl.DataFrame], int]:
    with warehouse.writer(settings) as con:
        responses = warehouse.query_frame(con, "SELECT * FROM response")
        audit = {name: warehouse.query_frame(con, sql) for name, sql in AUDIT_TABLES.items()}
        last_batch = con.execute("SELECT coalesce(max(batch_id), 0) FROM batch").fetchone()[0]
    return responses, audit, int(last_batch)


@task(name="build-marts", cache_policy=NO_CACHE)
def build(responses: pl.DataFrame, settings: Settings, as_of: dt.date) -> dict[str, pl.DataFrame]:
    params = MartParams(
        gap_days=settings.episode_gap_days,
        open_days=settings.episode_open_days,
        min_cell_size=settings.min_cell_size,
        as_of=as_of,
    )
    return build_marts(responses, load_instruments(settings), params)


@task(name="publish-marts", cache_policy=NO_CACHE)
def publish_marts(marts: dict[str, pl.DataFrame], settings: Settings, meta: dict) -> dict:
    snap = publish.publish(marts, settings, meta=meta)
    return {"version": snap.version, "path": str(snap.path), "tables": snap.tables}


@flow(name="aggregate", log_prints=True)
def aggregate(as_of: str | None = None) -> dict:
    """Rebuild every mart from the warehouse and publish them atomically."""
    settings = get_settings()
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    responses, audit, last_batch = read_warehouse(settings)
    marts = build(responses, settings, day)
    marts.update(audit)
    info = publish_marts(
        marts,
        settings,
        {"as_of": day.isoformat(), "last_batch_id": last_batch, "responses": responses.height},
    )
    get_run_logger().info(
        "published snapshot %s: %s",
        info["version"],
        ", ".join(f"{k}={v}" for k, v in sorted(info["tables"].items())),
    )
    return info
