"""``tandem purge``: delete kept raw files older than the retention period (audited).

Registered by ``tandem/app/cli.py``. The nightly sweep runs the same purge
(tandem.pipeline.retention); this runs it now, or shows what it would delete.
"""

from __future__ import annotations

from typing import Annotated

import typer


def purge_command(
    days: Annotated[int | None, typer.Option(
        min=1, help="Keep this many days (default TANDEM_RECEIVED_RETENTION_DAYS).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be deleted; delete nothing.")] = False,
) -> None:
    """Delete kept raw files (received/, intake/done/) older than the retention period.

    Batch records (hashes, names, outcomes) stay: exactly-once and lineage need them, not
    the bytes. Every purge is recorded in TANDEM_HOME/audit/retention.jsonl."""
    from tandem.app.clikit import echo, plural
    from tandem.core.settings import get_settings
    from tandem.pipeline.retention import purge_received

    settings = get_settings()
    report = purge_received(settings, days=days, dry_run=dry_run, trigger="cli")
    if report.cutoff is None:
        echo("Retention is off (TANDEM_RECEIVED_RETENTION_DAYS=0): nothing was purged.")
        return
    for item in report.deleted[:50]:
        echo(f"{item['path']} ({item['size_bytes']:,} bytes, arrived "
             f"{item['arrived_at'][:10]})", indent="  ", break_long=True)
    if report.files > 50:
        echo(f"... and {report.files - 50:,} more.", indent="  ")
    verb = "Would delete" if dry_run else "Deleted"
    echo(f"{verb} {plural(report.files, 'kept file')} ({report.bytes:,} bytes) whose bytes "
         f"last arrived before {report.cutoff:%Y-%m-%d %H:%M} UTC ({report.retention_days} "
         f"days). Audit: audit/retention.jsonl (purge {report.purge_id[:12]}).")
