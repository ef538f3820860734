"""The nightly sweep: whatever the events missed, failed files whose contract is fixed, and
the lake's upkeep (tandem.pipeline.maintenance).

Events are fast but not guaranteed (the watcher was down, the server restarted, an ingest
run crashed). The sweep makes the schedule the safety net:

1. complete files still in ``inbox/<clinic>/`` are received (trigger ``sweep``);
2. files waiting in intake, or claimed by a run that died, are ingested;
3. a file whose latest attempt failed is re-tried once its contract (the clinic's YAML,
   the instruments or the rules) has changed since that attempt;
4. kept raw files older than ``TANDEM_RECEIVED_RETENTION_DAYS`` are purged (audited;
   tandem.pipeline.retention).

Loading is idempotent (same bytes: a duplicate batch that changes nothing), so a sweep
that overlaps a live run is harmless. The batch events it causes re-publish the marts.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger

from flows.ingest import ingest, ingest_claimed, report_batches
from tandem.core import warehouse
from tandem.core.safe_files import FileRefused
from tandem.core.settings import Settings, get_settings
from tandem.pipeline import intake
from tandem.pipeline.maintenance import maintain
from tandem.pipeline.retention import purge_received

# A claim older than this belongs to a run that died.
STALE_CLAIM_SECONDS = 3600


def receive_inbox(settings: Settings, stable_seconds: float, trigger: str) -> list[intake.Landed]:
    """Move complete files (not written to for a while) from every inbox into intake."""
    out = []
    if not settings.inbox_dir.is_dir():
        return out
    now = time.time()
    logger = _logger()
    for folder in sorted(p for p in settings.inbox_dir.iterdir()
                         if p.is_dir() and not p.is_symlink()):
        if not intake.valid_clinic_id(folder.name):
            continue
        for entry in intake.inbox_entries(folder):
            if entry.refused is not None:  # a link or a special file: never opened
                where = intake.refuse_entry(settings, folder.name, entry.path, entry.refused)
                logger.warning("refused %s/%s: it %s (moved to %s, not read)", folder.name,
                               entry.path.name, entry.refused,
                               where.parent if where else "nowhere: it could not be moved")
                continue
            if now - entry.mtime_ns / 1e9 < stable_seconds:
                continue
            try:
                out.append(intake.receive_file(settings, folder.name, entry.path, trigger))
            except FileRefused as exc:  # swapped for a link or a pipe since it was listed
                logger.warning("refused %s/%s: it %s", folder.name, entry.path.name,
                               exc.reason)
                if intake.refusal_left_in_inbox(entry.path):
                    intake.refuse_entry(settings, folder.name, entry.path, exc.reason)
    return out


def _logger():
    """The flow run's logger inside a run (its lines reach the Prefect UI), else the module's."""
    try:
        return get_run_logger()
    except Exception:  # noqa: BLE001 - MissingContextError: called outside a flow run
        return logging.getLogger(__name__)


def _contract_changed_at(settings: Settings, clinic_id: str | None) -> float:
    """Newest modification time of anything that decides whether a clinic's file passes."""
    paths: list[Path] = [settings.contracts_dir / "rules.yaml"]
    for base in (settings.contracts_dir, settings.local_contracts_dir):  # site instruments too
        paths += list((base / "instruments").glob("*.yaml"))
    for base in (settings.contracts_dir / "clinics", settings.local_contracts_dir / "clinics"):
        paths += [base / f"{clinic_id}.yaml"] if clinic_id else list(base.glob("*.yaml"))
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def failed_to_retry(settings: Settings) -> list[dict]:
    """Files whose latest attempt failed and whose contract changed since that attempt."""
    if not warehouse.lake_exists(settings):
        return []
    with warehouse.reader(settings) as con:
        rows = con.execute(
            """
            SELECT b.batch_id, b.clinic_id, b.source_name, b.stored_path, b.finished_at
            FROM batch b
            WHERE b.status = 'failed' AND b.stored_path IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM batch o WHERE o.content_sha256 = b.content_sha256
                              AND o.batch_id > b.batch_id)
            ORDER BY b.batch_id
            """
        ).fetchall()
    out = []
    for batch_id, clinic, name, stored, finished in rows:
        finished_ts = finished.timestamp() if isinstance(finished, dt.datetime) else 0.0
        if _contract_changed_at(settings, clinic) > finished_ts and Path(stored).exists():
            out.append({"batch_id": batch_id, "clinic_id": clinic, "source_name": name,
                        "stored_path": stored})
    return out


@flow(name="sweep", log_prints=True, retries=1, retry_delay_seconds=60)
def sweep() -> dict:
    """Ingest every file events missed; retry failed files whose contract was fixed."""
    settings = get_settings()
    logger = get_run_logger()
    received = receive_inbox(settings, max(settings.inbox_stable_seconds, 5.0), "sweep")
    results: list[dict] = []
    now = time.time()
    for clinic in intake.clinics_in(settings, "claimed"):  # claims whose run died
        for w in intake.pending(settings, clinic, "claimed"):
            if now - w.path.parent.stat().st_mtime > STALE_CLAIM_SECONDS:
                intake.unclaim(settings, w)
    for clinic in intake.clinics_in(settings, "pending"):
        waiting = intake.pending(settings, clinic)
        claimed = [replace(c, trigger="sweep")
                   for c in (intake.claim(settings, w) for w in waiting) if c]
        results.extend(ingest_claimed(settings, claimed))
    retried = []
    for item in failed_to_retry(settings):
        with tempfile.TemporaryDirectory(prefix="tandem-retry-") as tmp:
            copy = Path(tmp) / intake.safe_filename(item["source_name"])
            try:
                shutil.copyfile(item["stored_path"], copy)
            except FileNotFoundError:  # purged since it was listed
                continue
            try:
                retried.extend(ingest([str(copy)], item["clinic_id"], "sweep"))
            except duckdb.Error:
                logger.exception("retry of batch %s failed", item["batch_id"])
    report_batches(results + retried, "sweep")
    purged = purge_received(settings, trigger="sweep")
    summary = {"received_from_inbox": len(received), "ingested": len(results),
               "retried": len(retried),
               "retried_loaded": sum(1 for r in retried if r["status"] == "loaded"),
               "purged_files": purged.files}
    try:  # the lake's nightly upkeep: compaction, snapshot expiry, file clean-up
        summary["maintenance"] = maintain(settings)
    except duckdb.Error:
        logger.exception("lake maintenance failed; it runs again next night")
    logger.info("sweep: %s", summary)
    return summary
