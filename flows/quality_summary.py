"""The daily data-quality summary: what arrived, what loaded, what was set aside and why.

It reads the published snapshot's audit tables (read-only, like the dashboard), so it
never waits for or blocks a writer. It writes ``reports/quality-<date>.md`` and ``.json``
under TANDEM_HOME and shows the same table on the run's page in the Prefect UI. It names
files and rules, never client ids or row contents.
"""

from __future__ import annotations

import datetime as dt
import json

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.alerts import silent_clinics, summary_event
from flows.events import emit
from tandem.core import published
from tandem.core.settings import Settings, get_settings


def summarise(settings: Settings, since: dt.datetime) -> dict:
    opened = published.open_current(settings)
    if opened is None:
        return {"since": since.isoformat(), "snapshot": None, "clinics": [], "top_rules": [],
                "failed_files": []}
    snap, con = opened
    try:
        clinics = con.execute(
            """
            SELECT coalesce(clinic_id, '_unknown') AS clinic, count(*) AS batches,
                   count(*) FILTER (WHERE status = 'loaded') AS loaded,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status NOT IN ('loaded', 'failed')) AS other,
                   coalesce(sum(rows_received), 0) AS rows_received,
                   coalesce(sum(rows_loaded), 0) AS rows_loaded,
                   coalesce(sum(rows_quarantined), 0) AS rows_quarantined,
                   coalesce(sum(rows_duplicate), 0) AS rows_duplicate
            FROM audit_batch WHERE received_at >= ? GROUP BY 1 ORDER BY 1
            """,
            [since],
        ).fetchall()
        rules = con.execute(
            """
            SELECT rule, count(DISTINCT (batch_id, source_row)) AS rows
            FROM audit_quarantine WHERE quarantined_at >= ? GROUP BY 1 ORDER BY 2 DESC, 1
            LIMIT 10
            """,
            [since],
        ).fetchall()
        failed = con.execute(
            "SELECT coalesce(clinic_id, '_unknown'), source_name, reason FROM audit_batch "
            "WHERE status = 'failed' AND received_at >= ? ORDER BY batch_id",
            [since],
        ).fetchall()
    finally:
        con.close()
    cols = ("clinic", "batches", "loaded", "failed", "other", "rows_received", "rows_loaded",
            "rows_quarantined", "rows_duplicate")
    return {
        "since": since.isoformat(),
        "snapshot": snap.version,
        "clinics": [dict(zip(cols, r, strict=True)) for r in clinics],
        "top_rules": [{"rule": r, "rows": n} for r, n in rules],
        "failed_files": [{"clinic": c, "file": f, "reason": (why or "")[:200]}
                         for c, f, why in failed],
    }


def to_markdown(summary: dict) -> str:
    lines = [f"# Data quality since {summary['since']}", "",
             f"Snapshot: `{summary['snapshot']}`", ""]
    if summary["clinics"]:
        head = list(summary["clinics"][0])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in summary["clinics"]]
    else:
        lines.append("No batches received in this period.")
    if summary["top_rules"]:
        lines += ["", "## Rules that quarantined most rows", "", "| rule | rows |", "|---|---|"]
        lines += [f"| {r['rule']} | {r['rows']} |" for r in summary["top_rules"]]
    if summary["failed_files"]:
        lines += ["", "## Files that failed", "", "| clinic | file | reason |", "|---|---|---|"]
        lines += [f"| {f['clinic']} | {f['file']} | {f['reason'].replace('|', '/')} |"
                  for f in summary["failed_files"]]
    return "\n".join(lines) + "\n"


@flow(name="quality-summary", log_prints=True)
def quality_summary(hours: int = 24) -> dict:
    """Summarise the last day's deliveries for the quality team, and tell who listens
    (the summary, and every clinic silent for ``notify_silent_days``)."""
    settings = get_settings()
    now = dt.datetime.now(dt.UTC)
    summary = summarise(settings, now - dt.timedelta(hours=hours))
    reports = settings.home_dir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stem = reports / f"quality-{now:%Y-%m-%d}"
    md = to_markdown(summary)
    stem.with_suffix(".md").write_text(md, encoding="utf-8")
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=str),
                                         encoding="utf-8")
    create_markdown_artifact(key="quality-summary", markdown=md,
                             description="Daily data-quality summary")
    logger = get_run_logger()
    logger.info("quality summary written to %s.md", stem)
    # --- notifications (flows/notify.py): the summary itself, and clinics gone quiet ---
    emit(summary_event(summary, md, str(stem.with_suffix(".md"))))
    silent = silent_clinics(settings, now)
    for spec in silent:
        emit(spec)
        logger.warning("clinic %s has sent nothing for %s days", spec[2]["clinic_id"],
                       spec[2]["days_silent"])
    return {"report": str(stem.with_suffix(".md")), "clinics": len(summary["clinics"]),
            "silent_clinics": [spec[2]["clinic_id"] for spec in silent]}
