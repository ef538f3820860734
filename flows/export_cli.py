"""``tandem export episodes --out FILE.csv`` (registered by tandem.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.export import export_episodes
from tandem.publish import open_current

EXIT_NOTHING_PUBLISHED = 4


def export_command(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write.")],
) -> None:
    """Export one row per episode and measure (plus NHS_TT rows) from the published marts."""
    opened = open_current()
    if opened is None:
        typer.echo("nothing published yet: run the aggregate flow first", err=True)
        raise typer.Exit(EXIT_NOTHING_PUBLISHED)
    snap, con = opened
    try:
        n = export_episodes(con, out)
    finally:
        con.close()
    typer.echo(f"wrote {n} rows to {out} (snapshot {snap.version})")
