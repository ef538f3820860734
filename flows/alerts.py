"""Checks whose findings become notifications: each returns the event to send, or nothing.

Plain functions of the settings and published data (no Prefect): the ``ingest`` flow and
the command line call :func:`quarantine_alert` after each batch, the daily
``quality-summary`` flow calls :func:`silent_clinics` and :func:`summary_event`, the inbox
watcher :func:`marts_late_event`. The events
are sent with Prefect (``flows.events``) or the REST API (``tandem.app.prefect_api``); the
automations in :mod:`flows.notify` turn them into e-mails and webhook posts. They name
clinics, files and counts, never client ids or row contents.
"""

from __future__ import annotations

import datetime as dt
import statistics

from flows.events import LABEL_CLINIC, Spec
from tandem.core import published
from tandem.core.contracts import load_clinic_contracts
from tandem.core.settings import Settings

QUARANTINE_HIGH = "tandem.quality.quarantine-high"
CLINIC_SILENT = "tandem.clinic.silent"
QUALITY_SUMMARY = "tandem.quality.summary"
MARTS_LATE = "tandem.marts.late"


def usual_quarantine_rate(settings: Settings, clinic_id: str, before_batch: int) -> float:
    """The median share of rows quarantined in the clinic's last loaded files before
    ``before_batch``, from the published audit (0 when there are none yet)."""
    snap = published.current(settings)
    if snap is None:
        return 0.0
    try:
        rows = published.query_snapshot(
            snap,
            "SELECT rows_quarantined, rows_received FROM audit_batch WHERE clinic_id = ? "
            "AND status = 'loaded' AND rows_received > 0 AND batch_id < ? "
            "ORDER BY batch_id DESC LIMIT ?",
            [clinic_id, before_batch, settings.notify_quarantine_history])
    except Exception:  # noqa: BLE001 - an older snapshot without the table: no history
        return 0.0
    rates = [q / n for q, n in rows if n]
    return statistics.median(rates) if rates else 0.0


def quarantine_alert(settings: Settings, result: dict) -> Spec | None:
    """``tandem.quality.quarantine-high`` when a loaded file's quarantined share is well
    above its clinic's usual (settings ``notify_quarantine_factor`` and ``_margin``)."""
    received = int(result.get("rows_received") or 0)
    quarantined = int(result.get("rows_quarantined") or 0)
    clinic = result.get("clinic_id")
    if result.get("status") != "loaded" or not received or not quarantined or not clinic:
        return None
    rate = quarantined / received
    usual = usual_quarantine_rate(settings, clinic, int(result["batch_id"]))
    if rate <= usual * settings.notify_quarantine_factor or \
            rate - usual < settings.notify_quarantine_margin:
        return None
    return (
        QUARANTINE_HIGH,
        {"prefect.resource.id": f"tandem.batch.{result['batch_id']}",
         "prefect.resource.name": str(result.get("source_name")), LABEL_CLINIC: clinic},
        {"batch_id": result["batch_id"], "source_name": result.get("source_name"),
         "clinic_id": clinic, "rows_received": received, "rows_quarantined": quarantined,
         "rate_percent": round(100 * rate, 1), "usual_percent": round(100 * usual, 1)},
    )


def silent_clinics(settings: Settings, now: dt.datetime | None = None) -> list[Spec]:
    """``tandem.clinic.silent`` for each clinic with a contract that has sent nothing for
    ``notify_silent_days`` (counted from its contract's ``started_on`` if it never has)."""
    now = now or dt.datetime.now(dt.UTC)
    limit = dt.timedelta(days=settings.notify_silent_days)
    last: dict[str, dt.datetime] = {}
    snap = published.current(settings)
    if snap is not None:
        try:
            rows = published.query_snapshot(
                snap, "SELECT clinic_id, max(received_at) FROM audit_batch "
                      "WHERE clinic_id IS NOT NULL GROUP BY 1")
        except Exception:  # noqa: BLE001 - no audit yet: every clinic counts as never heard
            rows = []
        last = {c: t for c, t in rows if t is not None}
    out: list[Spec] = []
    for clinic_id, contract in sorted(load_clinic_contracts(settings).items()):
        seen = last.get(clinic_id)
        since = seen or dt.datetime.combine(contract.started_on, dt.time(), dt.UTC)
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        if now - since < limit:
            continue
        days = (now - since).days
        out.append((
            CLINIC_SILENT,
            {"prefect.resource.id": f"tandem.clinic.{clinic_id}",
             "prefect.resource.name": contract.name, LABEL_CLINIC: clinic_id},
            {"clinic_id": clinic_id, "clinic_name": contract.name, "days_silent": days,
             "last_received_at": seen.isoformat() if seen else None,
             "never_sent": seen is None},
        ))
    return out


def marts_late_event(last_batch_id: int, published_batch_id: int, minutes: float) -> Spec:
    """``tandem.marts.late``: the published marts have lacked new batches this long."""
    return (
        MARTS_LATE,
        {"prefect.resource.id": f"tandem.warehouse.batch.{last_batch_id}"},
        {"last_batch_id": last_batch_id, "published_batch_id": max(published_batch_id, 0),
         "minutes": round(minutes)},
    )


def summary_event(summary: dict, markdown: str, report_path: str) -> Spec:
    """``tandem.quality.summary``: the daily summary's text and totals, for the e-mail."""
    clinics = summary.get("clinics") or []
    totals = {k: sum(int(c.get(k) or 0) for c in clinics)
              for k in ("batches", "loaded", "failed", "rows_loaded", "rows_quarantined")}
    return (
        QUALITY_SUMMARY,
        {"prefect.resource.id": f"tandem.quality.summary.{summary.get('since', '')[:10]}",
         "prefect.resource.name": "daily quality summary"},
        {"since": summary.get("since"), "snapshot": summary.get("snapshot"),
         "clinics": len(clinics), **totals, "failed_files": len(summary.get("failed_files") or []),
         "report": report_path, "text": markdown},
    )
