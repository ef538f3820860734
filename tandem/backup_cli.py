"""``tandem backup`` and ``tandem restore`` (see :mod:`tandem.backup`).

Registered in ``tandem/cli.py``::

    from tandem.backup_cli import backup_command, restore_command
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def backup_command(
    dest: Annotated[Path, typer.Argument(help="A new, empty folder for the backup.")],
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
    """Back up the warehouse, the published snapshot and the site's contracts, with hashes."""
    from tandem.backup import BackupError, backup

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
        f"backed up {report.files} files ({report.bytes:,} bytes) to {report.path}: "
        f"{wh.get('batch_rows', 0)} batches, {wh.get('response_rows', 0)} responses, "
        f"snapshot {report.manifest['published_version']}"
    )
    if not include_key:
        console.print("the pseudonym key is not in the backup: keep it in your secrets manager")


def restore_command(
    source: Annotated[Path, typer.Argument(help="A folder written by `tandem backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Restore over a non-empty TANDEM_HOME.")
    ] = False,
) -> None:
    """Restore a backup into an empty TANDEM_HOME, after checking every file's hash."""
    from tandem.backup import BackupError, restore
    from tandem.settings import get_settings

    settings = get_settings()
    try:
        manifest = restore(source, settings, force=force)
    except BackupError as exc:
        console.print(f"[red]restore refused:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"restored {len(manifest['files'])} files into {settings.home_dir} "
                  f"(backup of {manifest['created_at']}), every hash checked")
    if not manifest["includes_pseudonym_key"]:
        console.print("put the pseudonym key back (TANDEM_PSEUDONYM_KEY or secrets/pseudonym.key)"
                      " before the next ingest, or new files get unlinkable pseudonyms")
