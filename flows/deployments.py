"""The served deployments: what runs on events, what runs on a schedule.

``python -m flows.deployments`` serves them all from one process (``tandem serve`` starts
it next to the Prefect server). Each flow run is a fresh process started by the runner.

Coalescing. A trigger with ``within=W`` fires at the *first* matching event and ignores
the rest of that window (Prefect's reactive bucket: it fires eagerly, then waits for the
window to end). Alone that would lose the tail of a burst, so the run it starts *owns*
the window: it keeps working until ``W`` (+ a margin) after it started, which is after the
window the trigger ignored events in, and does a final check before it ends:

* ``ingest-received`` claims every file waiting in its clinic's intake (not only the
  event's), loads them with the ``ingest`` flow, and keeps claiming new arrivals until
  its window is over. Claims are atomic renames, so a file loads exactly once.
* ``aggregate-on-batches`` publishes at once when it starts (low latency for a lone
  file), then re-publishes only after the warehouse has been quiet for a moment (or a
  maximum wait), and finally once more if anything landed since its last publish. It
  has a deployment concurrency limit of 1 (queue), so two of them never overlap, and a
  run that finds the published snapshot already current publishes nothing.

So 100 files in a minute cause a handful of ``aggregate`` runs, and the last batch of a
burst is always in the marts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import time
from pathlib import Path

import duckdb
from filelock import FileLock
from filelock import Timeout as LockTimeout
from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows.aggregate import aggregate
from flows.events import (
    BATCH_ANY,
    FILE_RECEIVED,
    LABEL_CLINIC,
    LABEL_FILE,
    LABEL_TRIGGER,
    MARTS_STALE,
)
from flows.ingest import ingest
from tandem import intake, publish
from tandem.intake import Landed, orchestration_settings
from tandem.settings import Settings, get_settings

# A run outlives its trigger window by this much (event timestamps vs. run start).
WINDOW_MARGIN_SECONDS = 2.0
POLL_SECONDS = 0.5


def ingest_claimed(settings: Settings, claimed: list[Landed]) -> list[dict]:
    """Load claimed files with ``ingest`` (one run per trigger kind), then mark them done.

    If ``ingest`` itself fails (a bug or an outage, not bad input), the files go back to
    pending so a retry or the sweep loads them; already-loaded ones then come out as
    duplicates, which change nothing.
    """
    results: list[dict] = []
    if not claimed:
        return results
    clinic = claimed[0].clinic_id
    ordered = sorted(claimed, key=lambda c: (c.trigger, c.token))
    try:
        for trig, group in itertools.groupby(ordered, key=lambda c: c.trigger):
            trig = trig if trig in ("inbox", "api", "sweep", "cli") else "inbox"
            results.extend(ingest([str(c.path) for c in group], clinic, trig))
    except BaseException:
        for c in claimed:
            _unclaim(settings, c)
        raise
    for c in claimed:
        intake.finish(settings, c)
    return results


def _unclaim(settings: Settings, landed: Landed) -> None:
    src = intake.intake_dir(settings, "claimed", landed.clinic_id) / landed.token
    dst = intake.intake_dir(settings, "pending", landed.clinic_id) / landed.token
    with contextlib.suppress(OSError):
        src.rename(dst)


def _report(results: list[dict], key: str) -> None:
    """Row counts per batch, visible on the run's page in the Prefect UI."""
    if not results:
        return
    cols = ("batch_id", "source_name", "clinic_id", "status", "rows_received", "rows_loaded",
            "rows_quarantined", "rows_duplicate", "reason")
    create_table_artifact(
        key=key,
        table=[{c: r.get(c) for c in cols} for r in results],
        description="Batches loaded by this run (one row per file).",
    )


@flow(name="ingest-received", log_prints=True, retries=2, retry_delay_seconds=10)
def ingest_received(clinic_id: str, path: str | None = None, trigger: str = "inbox") -> dict:
    """Load the files received for one clinic: the event's, and any landing in the window.

    ``path`` is the file the triggering event named; it is loaded with its neighbours
    (or was already claimed by a sibling run).
    """
    settings = get_settings()
    cfg = orchestration_settings()
    logger = get_run_logger()
    if not intake.valid_clinic_id(clinic_id):
        raise ValueError(f"not a clinic id: {clinic_id!r}")
    deadline = window_end(cfg.ingest_window_seconds)
    results: list[dict] = []
    while True:
        claimed = [c for c in (intake.claim(settings, p)
                               for p in intake.pending(settings, clinic_id)) if c]
        if claimed:
            logger.info("claimed %d file(s) for %s", len(claimed), clinic_id)
            results.extend(ingest_claimed(settings, claimed))
            continue
        if time.time() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    _report(results, f"ingest-{clinic_id.lower().replace('_', '-')}")
    counts = {s: sum(1 for r in results if r["status"] == s)
              for s in sorted({r["status"] for r in results})}
    return {"clinic_id": clinic_id, "files": len(results), "by_status": counts,
            "rows_loaded": sum(r["rows_loaded"] for r in results)}


def window_end(window_seconds: float) -> float:
    """Wall-clock time this run must cover: its trigger window, counted from its creation.

    The run is created after the event that fired it, so ``created + window`` is at or
    after the end of the window in which the trigger ignored further events. A run that
    waited in a queue past that point needs only one look.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    created = getattr(getattr(ctx, "flow_run", None), "created", None)
    base = created.timestamp() if created else time.time()
    return base + window_seconds + WINDOW_MARGIN_SECONDS


def _signature(settings: Settings) -> tuple:
    """Cheap 'did the warehouse change' signal: a commit touches the file or its WAL."""
    out = []
    for p in (settings.warehouse_path, Path(str(settings.warehouse_path) + ".wal")):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def _writer_active(settings: Settings) -> bool:
    """True while some process holds the warehouse lock (a batch is being written)."""
    lock = FileLock(str(settings.lock_path), timeout=0)
    try:
        lock.acquire()
    except LockTimeout:
        return True
    lock.release()
    return False


def latest_batch_id(settings: Settings, wait: float = 600) -> int:
    """Newest batch in the warehouse, read under the writer lock (read-only)."""
    if not settings.warehouse_path.exists():
        return 0
    with FileLock(str(settings.lock_path), timeout=wait):
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
        try:
            return int(con.execute("SELECT coalesce(max(batch_id), 0) FROM batch")
                       .fetchone()[0])
        except duckdb.CatalogException:
            return 0
        finally:
            con.close()


def published_state(settings: Settings) -> tuple[int, float]:
    """(newest batch in the CURRENT snapshot or -1, when it was published or 0)."""
    snap = publish.current(settings)
    if snap is None or not Path(snap.path).exists():
        return -1, 0.0
    con = duckdb.connect(str(snap.path), read_only=True)
    try:
        row = con.execute(
            "SELECT value FROM publish_info WHERE key = 'last_batch_id'").fetchone()
        return (int(row[0]) if row else -1), snap.published_at.timestamp()
    except duckdb.Error:
        return -1, 0.0
    finally:
        con.close()


@flow(name="aggregate-on-batches", log_prints=True, retries=2, retry_delay_seconds=10)
def aggregate_on_batches(as_of: str | None = None) -> dict:
    """Publish the marts for a burst of batches: promptly, then when quiet, then done.

    Publishes when the warehouse is ahead of the CURRENT snapshot and either no writer
    has been active for ``aggregate_quiet_seconds`` or the snapshot is older than
    ``aggregate_max_wait_seconds`` (so a lone file is published at once, and a long burst
    every few minutes). Ends once its window is over and a final look, taken after the
    last change it saw, finds the snapshot current.
    """
    settings = get_settings()
    cfg = orchestration_settings()
    logger = get_run_logger()
    deadline = window_end(cfg.aggregate_window_seconds)
    published, published_at = published_state(settings)
    sig = _signature(settings)
    last_change = checked_at = -1.0
    runs: list[str] = []
    first, behind = True, False
    while True:
        now = time.time()
        current = _signature(settings)
        if current != sig or _writer_active(settings):
            sig, last_change = current, now
        quiet = now - last_change >= cfg.aggregate_quiet_seconds
        stale = now - published_at >= cfg.aggregate_max_wait_seconds
        if first or ((behind or last_change > checked_at) and (quiet or stale)):
            first, checked_at = False, now
            behind = latest_batch_id(settings) > published
            if behind and (quiet or stale):
                info = aggregate(as_of)
                runs.append(info["version"])
                published, published_at = published_state(settings)
                behind, last_change = False, time.time()  # look again after our own read
                continue
        if now >= deadline and quiet and not behind and checked_at >= last_change:
            break
        time.sleep(POLL_SECONDS)
    logger.info("published %d snapshot(s); marts include batch %d", len(runs), published)
    return {"published": runs, "last_batch_id": published}


def build_deployments() -> list:
    """Every deployment ``tandem serve`` runs, with its triggers and schedules."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    from flows.quality_summary import quality_summary
    from flows.sweep import sweep

    cfg = orchestration_settings()
    sched = ScheduleSettings()
    return [
        ingest_received.to_deployment(
            name="on-file-received",
            description="Runs when a file is received (inbox watcher or batch endpoint).",
            tags=["tandem", "events"],
            triggers=[DeploymentEventTrigger(
                name="tandem file received",
                expect={FILE_RECEIVED},
                for_each={LABEL_CLINIC},
                posture="Reactive",
                threshold=1,
                within=dt.timedelta(seconds=cfg.ingest_window_seconds),
                parameters={
                    "clinic_id": "{{ event.resource['" + LABEL_CLINIC + "'] }}",
                    "path": "{{ event.resource['" + LABEL_FILE + "'] }}",
                    "trigger": "{{ event.resource['" + LABEL_TRIGGER + "'] }}",
                },
            )],
        ),
        aggregate_on_batches.to_deployment(
            name="on-batch-finished",
            description="Re-publishes the marts after batches land, coalescing bursts.",
            tags=["tandem", "events"],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="ENQUEUE"),
            triggers=[DeploymentEventTrigger(
                name="tandem batch finished",
                expect={BATCH_ANY, MARTS_STALE},
                posture="Reactive",
                threshold=1,
                within=dt.timedelta(seconds=cfg.aggregate_window_seconds),
            )],
        ),
        ingest.to_deployment(
            name="manual", tags=["tandem"],
            description="Re-run files by hand: parameters paths, clinic_id, trigger.",
        ),
        aggregate.to_deployment(
            name="manual", tags=["tandem"],
            description="Rebuild and publish the marts by hand.",
        ),
        sweep.to_deployment(
            name="nightly", tags=["tandem", "schedule"],
            description="Ingests what events missed; retries failed files after a fix.",
            schedules=[Cron(sched.sweep_cron, timezone=sched.timezone)],
        ),
        quality_summary.to_deployment(
            name="daily", tags=["tandem", "schedule"],
            description="Writes the daily data-quality summary.",
            schedules=[Cron(sched.quality_cron, timezone=sched.timezone)],
        ),
    ]


class ScheduleSettings(intake.OrchestrationSettings):
    """When the scheduled flows run (env ``TANDEM_SWEEP_CRON`` etc.)."""

    sweep_cron: str = "0 2 * * *"
    quality_cron: str = "0 7 * * *"
    timezone: str = "Europe/London"


def main() -> None:
    """Serve every deployment until interrupted (what ``tandem serve`` starts)."""
    from prefect import serve

    serve(*build_deployments(), pause_on_shutdown=False, print_starting_message=False,
          limit=16)


if __name__ == "__main__":  # pragma: no cover
    main()
