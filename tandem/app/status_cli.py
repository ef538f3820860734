"""``tandem status``: per clinic, the last file and its freshness, failed files, open
quarantine by reason, and the age of the published marts (tandem.pipeline.status)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer


def _age(days: float | None) -> str:
    if days is None:
        return "never"
    if days < 1:
        return f"{days * 24:.0f} h ago"
    return f"{days:.0f} d ago"


def status_command(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the status as JSON on stdout.")] = False,
) -> None:
    """Per clinic: last file, freshness, failed files, quarantine by reason; marts age.

    Failed files are those whose name has not loaded since. The quarantine counts open
    administrations (those a reprocess has not resolved); `tandem quarantine list` names
    them."""
    from tandem.app.clikit import echo, join_words, plural
    from tandem.core.settings import get_settings
    from tandem.pipeline.status import clinic_status

    report = clinic_status(get_settings())
    if json_output:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    for c in report["clinics"]:
        last: dict[str, Any] | None = c["last_file"]
        head = (f"{c['clinic_id']}: last file {last['source_name']} ({last['status']}, "
                f"{_age(c['freshness_days'])})" if last else f"{c['clinic_id']}: no file yet")
        failed = c["failed_files"]
        quarantine = c["quarantine"]
        parts = [plural(len(failed), "failed file") if failed else "no failed file"]
        if quarantine:
            parts.append("quarantined: " + join_words(
                f"{plural(n, 'administration')} {rule}" for rule, n in
                sorted(quarantine.items(), key=lambda kv: -kv[1])))
        else:
            parts.append("nothing quarantined")
        echo(f"{head}; {'; '.join(parts)}.")
        for f in failed[:5]:
            echo(f"failed: {f['source_name']} (batch {f['batch_id']}): {f['reason']}",
                 indent="  ")
    marts = report["marts"]
    if marts is None:
        echo("Marts: nothing published yet (tandem aggregate).")
    else:
        behind = (" They lack the newest batches (tandem aggregate)." if marts.get("behind")
                  else " They include every batch.")
        echo(f"Marts: snapshot {marts['version']} published {marts['age_hours']:.1f} h ago."
             + behind)
