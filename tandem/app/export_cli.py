"""``tandem export episodes --out FILE.csv`` (registered by tandem.app.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tandem.app.clikit import EXIT_NO_DATA, Failure, plural, typer_app

EXIT_NOTHING_PUBLISHED = EXIT_NO_DATA

export_app = typer_app("Export published data.")


@export_app.command("episodes")
def export_command(
    out: Annotated[Path, typer.Option("--out", help="The CSV file to write.", metavar="FILE",
                                      show_default=False)],
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print what was written as JSON on stdout.")] = False,
) -> None:
    """One row per episode and measure, as CSV.

    Each episode also gets an NHS Talking Therapies row. Reads the published marts, so
    it shows what the dashboard shows. Exit code 4 when nothing is published yet or the
    snapshot holds no episode; then no file is written.
    """
    from tandem.core.published import open_current
    from tandem.core.settings import get_settings
    from tandem.pipeline.export import export_episodes

    if out.is_dir():
        raise typer.BadParameter(f"{out} is a folder; give the name of a CSV file to write.",
                                 param_hint="--out")
    opened = open_current(get_settings())
    if opened is None:
        raise Failure("nothing is published yet, so there is nothing to export. Load files "
                      "with `tandem ingest PATH...`, then publish with `tandem aggregate`.",
                      EXIT_NO_DATA)
    snap, con = opened
    staged = out.with_name(f".{out.name}.export")
    try:
        n = export_episodes(con, staged)
    finally:
        con.close()
    if n == 0:
        staged.unlink(missing_ok=True)
        raise Failure(f"the published snapshot {snap.version} holds no episode yet, so "
                      f"{out} was not written. Its files may all have failed: "
                      "see the dashboard's quality pages.", EXIT_NO_DATA)
    staged.replace(out)
    if json_output:
        typer.echo(json.dumps({"file": str(out), "rows": n, "snapshot": snap.version,
                               "published_at": snap.published_at.isoformat()}))
    else:
        typer.echo(f"Wrote {plural(n, 'row')} to {out} (snapshot {snap.version}, published "
                   f"{snap.published_at:%Y-%m-%d %H:%M}).")
