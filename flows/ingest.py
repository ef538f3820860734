"""The ``ingest`` flow: :func:`tandem.pipeline.ingest.ingest_paths` as Prefect runs it.

One task run per chunk of files (a task run per file costs more than a small file's load);
each finished batch is logged and announced as an event. Also: loading the files a served
run has claimed from intake (:func:`ingest_claimed`), used by the event-driven deployment
and the nightly sweep.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import duckdb
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context

from flows.alerts import quarantine_alert
from flows.events import emit, emit_batch_finished
from tandem.core.settings import Settings, get_settings
from tandem.pipeline import intake
from tandem.pipeline.ingest import TRIGGERS, BatchResult, ingest_paths
from tandem.pipeline.intake import Landed

# Files per task run.
FLOW_CHUNK_FILES = 500


def _is_transient(state) -> bool:
    """Retry only what may pass by itself (a lock wait, an I/O hiccup), never bad input."""
    try:
        state.result()
    except (TimeoutError, OSError, duckdb.IOException):
        return True
    except Exception:
        return False
    return False


@task(name="load-files", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=lambda task, run, state: _is_transient(state))
def load_files(paths: list[str], clinic_id: str | None, trigger: str,
               as_of: str | None = None,
               on_result: Callable[[BatchResult], None] | None = None) -> list[dict]:
    """A chunk of files: validated together, each loaded as its own batch (in order).

    A retry re-runs the chunk: files it already committed come back ``duplicate_file``.
    """
    ctx = get_run_context()
    flow_run_id = str(ctx.task_run.flow_run_id) if getattr(ctx, "task_run", None) else None
    logger = get_run_logger()

    def log_result(result: BatchResult) -> None:
        level = logging.WARNING if result.status == "failed" else logging.INFO
        logger.log(level, "%s: %s (received %d, loaded %d, quarantined %d, duplicate %d)%s",
                   result.source_name, result.status, result.rows_received,
                   result.rows_loaded, result.rows_quarantined, result.rows_duplicate,
                   f": {result.reason}" if result.reason else "")
        if on_result:
            on_result(result)

    return ingest_paths(paths, clinic_id, trigger, as_of, settings=get_settings(),
                        flow_run_id=flow_run_id, on_result=log_result)


@flow(name="ingest", log_prints=True)
def ingest(
    paths: list[str], clinic_id: str | None = None, trigger: str = "cli", as_of: str | None = None,
    on_result: Callable[[BatchResult], None] | None = None,
) -> list[dict]:
    """Ingest files (each its own batch). Returns one summary per file.

    ``as_of`` (YYYY-MM-DD, default today) is the date a session may not be after;
    ``on_result`` (in-process callers only, e.g. a progress bar) is called per file.
    """
    results: list[dict] = []
    settings = get_settings()
    for start in range(0, len(paths), FLOW_CHUNK_FILES):
        for summary in load_files(paths[start:start + FLOW_CHUNK_FILES], clinic_id, trigger,
                                  as_of, on_result):
            results.append(summary)
            # --- events (flows/events.py): a finished batch may make the marts stale ---
            emit_batch_finished(summary, trigger)
            # --- and one that is unusually bad is worth a notification (flows/notify.py)
            alert = quarantine_alert(settings, summary)
            if alert is not None:
                emit(alert)
    return results


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
            trig = trig if trig in TRIGGERS else "inbox"
            results.extend(ingest([str(c.path) for c in group], clinic, trig))
    except BaseException:
        for c in claimed:
            intake.unclaim(settings, c)
        raise
    for c in claimed:
        intake.finish(settings, c)
    return results


def report_batches(results: list[dict], key: str) -> None:
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
