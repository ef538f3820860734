"""The nightly sweep: whatever the events missed, and failed files whose contract is fixed.

Events are fast but not guaranteed (the watcher was down, the server restarted, an ingest
run crashed). The sweep makes the schedule the safety net:

1. complete files still in ``inbox/<clinic>/`` are received (trigger ``sweep``);
2. files waiting in intake, or claimed by a run that died, are ingested;
3. a file whose latest attempt failed is re-tried once its contract (the clinic's YAML,
   the instruments or the rules) has changed since that attempt.

Loading is idempotent (same bytes: a duplicate batch that changes nothing), so a sweep
that overlaps a live run is harmless. The batch events it causes re-publish the marts.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger

from flows.deployments import _report, _unclaim, ingest_claimed
from flows.ingest import ingest
from tandem import intake, warehouse
from tandem.settings import Settings, get_settings

# A claim older than this belongs to a run that died.
STALE_CLAIM_SECONDS = 3600


def receive_inbox(settings: Settings, stable_seconds: float, trigger: str) -> list[intake.Landed]:
    """Move complete files (not written to for a while) from every inbox into intake."""
    out = []
    if not settings.inbox_dir.is_dir():
        return out
    now = time.time()
    for folder in sorted(p for p in settings.inbox_dir.iterdir() if p.is_dir()):
        if not intake.valid_clinic_id(folder.name):
            continue
        for f in sorted(folder.iterdir()):
            if not f.is_file() or intake.is_partial(f):
                continue
            if now - f.stat().st_mtime < stable_seconds:
                continue
            out.append(intake.receive_file(settings, folder.name, f, trigger))
    return out


def _contract_changed_at(settings: Settings, clinic_id: str | None) -> float:
    """Newest modification time of anything that decides whether a clinic's file passes."""
    paths: list[Path] = [settings.contracts_dir / "rules.yaml"]
    paths += list((settings.contracts_dir / "instruments").glob("*.yaml"))
    for base in (settings.contracts_dir / "clinics", settings.local_contracts_dir / "clinics"):
        paths += [base / f"{clinic_id}.yaml"] if clinic_id else list(base.glob("*.yaml"))
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def failed_to_retry(settings: Settings) -> list[dict]:
    """Files whose latest attempt failed and whose contract changed since that attempt."""
    if not settings.warehouse_path.exists():
        return []
    with warehouse.writer(settings) as con:
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
    cfg = intake.orchestration_settings()
    logger = get_run_logger()
    received = receive_inbox(settings, max(cfg.inbox_stable_seconds, 5.0), "sweep")
    results: list[dict] = []
    now = time.time()
    for clinic in intake.clinics_in(settings, "claimed"):  # claims whose run died
        for w in intake.pending(settings, clinic, "claimed"):
            if now - w.path.parent.stat().st_mtime > STALE_CLAIM_SECONDS:
                _unclaim(settings, w)
    for clinic in intake.clinics_in(settings, "pending"):
        waiting = intake.pending(settings, clinic)
        claimed = [replace(c, trigger="sweep")
                   for c in (intake.claim(settings, w) for w in waiting) if c]
        results.extend(ingest_claimed(settings, claimed))
    retried = []
    for item in failed_to_retry(settings):
        with tempfile.TemporaryDirectory(prefix="tandem-retry-") as tmp:
            copy = Path(tmp) / intake.safe_filename(item["source_name"])
            shutil.copyfile(item["stored_path"], copy)
            try:
                retried.extend(ingest([str(copy)], item["clinic_id"], "sweep"))
            except duckdb.Error:
                logger.exception("retry of batch %s failed", item["batch_id"])
    _report(results + retried, "sweep")
    summary = {"received_from_inbox": len(received), "ingested": len(results),
               "retried": len(retried),
               "retried_loaded": sum(1 for r in retried if r["status"] == "loaded")}
    logger.info("sweep: %s", summary)
    return summary
