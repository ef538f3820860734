"""Tandem's Prefect events: their names, and helpers that emit them.

Events are how the served pipeline reacts: a received file starts ``ingest``, a finished
batch starts ``aggregate``, a publish tells whoever listens that the dashboard changed.
They carry clinic ids, file paths, content hashes and counts, never file contents or
client ids. Emitting never fails the caller: a lost event is caught by the nightly sweep.
"""

from __future__ import annotations

import logging
from typing import Any

FILE_RECEIVED = "tandem.file.received"
BATCH_PREFIX = "tandem.batch."  # + status: loaded | failed | duplicate_file | superseded
BATCH_LOADED = BATCH_PREFIX + "loaded"
BATCH_ANY = BATCH_PREFIX + "*"
MARTS_PUBLISHED = "tandem.marts.published"
# The warehouse holds batches the published marts lack and no event is coming for them
# (lost while the Prefect server restarted): sent by the watcher, starts ``aggregate``.
MARTS_STALE = "tandem.marts.stale"

# Resource labels the deployment triggers read.
LABEL_CLINIC = "tandem.clinic"
LABEL_FILE = "tandem.file"
LABEL_TRIGGER = "tandem.trigger"

log = logging.getLogger(__name__)


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any]) -> bool:
    try:
        from prefect.events import emit_event

        return emit_event(event=event, resource=resource, payload=payload) is not None
    except Exception:  # noqa: BLE001 - an event is a hint; the sweep catches what is lost
        log.warning("could not emit %s", event, exc_info=True)
        return False


# Each event is built by a function of plain values (``(event, resource, payload)``), so
# the command line can send the very same events through the REST API without Prefect.
Spec = tuple[str, dict[str, str], dict[str, Any]]


def emit(spec: Spec) -> bool:
    """Send one event built by a ``*_event`` function (here or in ``flows.alerts``)."""
    return _emit(*spec)


def file_received_event(clinic_id: str, path: str, source_name: str, sha256: str,
                        size_bytes: int, trigger: str) -> Spec:
    return (
        FILE_RECEIVED,
        {
            "prefect.resource.id": f"tandem.file.{clinic_id}.{sha256}",
            "prefect.resource.name": source_name,
            LABEL_CLINIC: clinic_id,
            LABEL_FILE: path,
            LABEL_TRIGGER: trigger,
        },
        {"size_bytes": size_bytes, "sha256": sha256, "source_name": source_name},
    )


def emit_file_received(clinic_id: str, path: str, source_name: str, sha256: str,
                       size_bytes: int, trigger: str) -> bool:
    """A file has left the inbox and waits in intake: ``ingest`` should load it."""
    return _emit(*file_received_event(clinic_id, path, source_name, sha256, size_bytes,
                                      trigger))


def batch_finished_event(result: dict, trigger: str) -> Spec:
    status = str(result.get("status") or "unknown")
    return (
        BATCH_PREFIX + status,
        {
            "prefect.resource.id": f"tandem.batch.{result.get('batch_id')}",
            "prefect.resource.name": str(result.get("source_name")),
            LABEL_CLINIC: str(result.get("clinic_id") or "_unknown"),
            LABEL_TRIGGER: trigger,
        },
        {k: result.get(k) for k in ("batch_id", "source_name", "status", "reason",
                                     "rows_received", "rows_loaded", "rows_quarantined",
                                     "rows_duplicate", "rows_replaced")},
    )


def emit_batch_finished(result: dict, trigger: str) -> bool:
    """One file's batch is in the warehouse (whatever its outcome): marts may be stale."""
    return _emit(*batch_finished_event(result, trigger))


def marts_published_event(info: dict) -> Spec:
    return (
        MARTS_PUBLISHED,
        {"prefect.resource.id": f"tandem.marts.{info.get('version')}"},
        {"version": info.get("version"), "tables": info.get("tables", {}),
         "last_batch_id": info.get("last_batch_id")},
    )


def emit_marts_published(info: dict) -> bool:
    """A new snapshot is CURRENT: the dashboard shows new data."""
    return _emit(*marts_published_event(info))


def emit_marts_stale(last_batch_id: int, published_batch_id: int) -> bool:
    """Batches up to ``last_batch_id`` are in the warehouse, the marts stop earlier."""
    return _emit(
        MARTS_STALE,
        {"prefect.resource.id": f"tandem.warehouse.batch.{last_batch_id}"},
        {"last_batch_id": last_batch_id, "published_batch_id": published_batch_id},
    )
