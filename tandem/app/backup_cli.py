"""``tandem backup`` and ``tandem restore`` (see :mod:`tandem.pipeline.backup`).

Registered in ``tandem/app/cli.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def backup_command(
    dest: Annotated[Path, typer.Argument(help="A new, empty folder for the backup.",
                                         metavar="FOLDER", show_default=False)],
    include_key: Annotated[
        bool,
        typer.Option("--include-key", help="Also copy the pseudonym key (normally kept in the "
                     "secrets manager; a backup with key and warehouse can re-identify clients)."),
    ] = False,
    include_received: Annotated[
        bool,
        typer.Option("--include-received", help="Also copy received/: the clinics' files as "
                     "sent, with raw client identifiers."),
    ] = False,
) -> None:
    """Back up the warehouse, the published marts and the site's contracts.

    A consistent copy (it waits for a batch being written), with a hash of every file.
    Exit code 2 if the folder exists or the copy is refused.
    """
    from rich.console import Console

    from tandem.pipeline.backup import BackupError, backup

    console = Console(stderr=True)

    if include_key:
        console.print("[yellow]warning:[/yellow] the backup holds the pseudonym key: store it "
                      "encrypted, apart from other copies of the warehouse")
    if include_received:
        console.print("[yellow]warning:[/yellow] the backup holds the received files, with raw "
                      "client identifiers: store it encrypted")
    try:
        report = backup(dest, include_key=include_key, include_received=include_received)
    except BackupError as exc:
        console.print(f"[red]backup refused:[/red] {exc}")
        raise typer.Exit(2) from None
    wh = report.manifest["warehouse"]
    console.print(
        f"Backed up {report.files} files ({report.bytes:,} bytes) to {report.path}: "
        f"{wh.get('batch_rows', 0)} batches, {wh.get('response_rows', 0)} responses, "
        f"snapshot {report.manifest['published_version']}."
    )
    if not include_key:
        console.print("The pseudonym key is not in the backup: keep it in your secrets "
                      "manager.")


def restore_command(
    source: Annotated[Path, typer.Argument(help="A folder written by `tandem backup`.",
                                           metavar="FOLDER", show_default=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Restore over a non-empty TANDEM_HOME.")
    ] = False,
) -> None:
    """Restore a backup into an empty TANDEM_HOME.

    Every file's hash is checked first. Exit code 2 if the backup is damaged or
    TANDEM_HOME is not empty (without --force).
    """
    from rich.console import Console

    from tandem.core.settings import get_settings
    from tandem.pipeline.backup import BackupError, restore

    console = Console(stderr=True)

    settings = get_settings()
    try:
        manifest = restore(source, settings, force=force)
    except BackupError as exc:
        console.print(f"[red]restore refused:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"Restored {len(manifest['files'])} files into {settings.home_dir} "
                  f"(backup of {manifest['created_at']}); every hash checked.")
    if not manifest["includes_pseudonym_key"]:
        console.print("Put the pseudonym key back (TANDEM_PSEUDONYM_KEY or "
                      "secrets/pseudonym.key) before the next ingest, or new files get "
                      "pseudonyms that do not link to the old ones.")
