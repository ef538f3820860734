"""``tandem migrate`` and ``tandem maintain``: the warehouse's lake, for its operators."""

from __future__ import annotations

from typing import Annotated

import typer


def migrate_command(
    reader_duckdb: Annotated[str, typer.Option(
        help="The DuckDB release that wrote the old warehouse (Tandem 0.1: 2.0.0).",
        metavar="VERSION")] = "2.0.0",
) -> None:
    """Move a Tandem 0.1 warehouse (warehouse.duckdb and published/) into the lake, once.

    Exit code 2 when it cannot be moved (the message says why); nothing is changed then."""
    from tandem.app.clikit import EXIT_USAGE, Failure, echo, say
    from tandem.core.settings import get_settings
    from tandem.pipeline.migrate import MigrationError, migrate

    say("Migrating the warehouse into the lake...")
    try:
        report = migrate(get_settings(), reader_duckdb)
    except MigrationError as exc:
        raise Failure(f"the migration was refused: {exc}", EXIT_USAGE) from None
    echo(f"Migrated {report.batches:,} batches, {report.responses:,} answers and "
         f"{report.quarantine:,} quarantined rows into the lake"
         + (f"; the published marts are {report.published_version}." if
            report.published_version else "; nothing was published yet."))
    for path in report.kept:
        echo(f"Kept the old {path.name} (delete it once you are satisfied).")


def maintain_command(
    retention_days: Annotated[int | None, typer.Option(
        min=1, metavar="DAYS",
        help="Keep snapshots this many days (default TANDEM_SNAPSHOT_RETENTION_DAYS).")]
        = None,
) -> None:
    """Compact the lake's files, expire old snapshots and delete files nobody needs.

    The nightly sweep does the same; the newest publications are always kept."""
    from tandem.app.clikit import echo, plural
    from tandem.core.settings import get_settings
    from tandem.pipeline.maintenance import maintain

    done = maintain(get_settings(), retention_days=retention_days)
    echo(f"Merged {plural(done['merged_files'], 'small file')}, expired "
         f"{plural(done['expired_snapshots'], 'snapshot')} and deleted "
         f"{plural(done['deleted_files'], 'file')} no snapshot needs.")
