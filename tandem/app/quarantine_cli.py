"""``tandem quarantine list|show``: the quarantine by clinic, batch or reason
(tandem.pipeline.status); ``tandem reprocess`` validates it again."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tandem.app.clikit import typer_app

quarantine_app = typer_app(
    "The quarantine: rows that failed a rule, by clinic, batch or reason.\n\n"
    "After a contract or roster fix, `tandem reprocess` validates them again.")

_CLINIC = typer.Option("--clinic", help="Only this clinic (repeat for more).")
_BATCH = typer.Option("--batch", help="Only this batch (repeat for more).")
_REASON = typer.Option("--reason", help="Only this rule, e.g. known_therapist (repeat for "
                                        "more).")


@quarantine_app.command("list")
def list_command(
    clinic: Annotated[list[str] | None, _CLINIC] = None,
    batch: Annotated[list[int] | None, _BATCH] = None,
    reason: Annotated[list[str] | None, _REASON] = None,
    include_resolved: Annotated[bool, typer.Option(
        "--all", help="Include rows a reprocess has resolved.")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the list as JSON on stdout.")] = False,
) -> None:
    """Quarantined administrations per batch and reason (open ones unless --all)."""
    from tandem.app.clikit import check_clinics, echo, plural
    from tandem.core.settings import get_settings
    from tandem.pipeline.reprocess import Scope
    from tandem.pipeline.status import quarantine_groups

    settings = get_settings()
    check_clinics(clinic or [], settings)
    groups = quarantine_groups(settings, Scope(tuple(clinic or ()), tuple(batch or ()),
                                               tuple(reason or ())), include_resolved)
    if json_output:
        typer.echo(json.dumps(groups, indent=1, default=str))
        return
    if not groups:
        echo("Nothing is quarantined" + (" there." if clinic or batch or reason else "."))
        return
    for g in groups:
        resolved = f", {g['resolved']} resolved" if include_resolved and g["resolved"] else ""
        echo(f"batch {g['batch_id']} {g['clinic_id']} {g['source_name']}: "
             f"{plural(g['administrations'], 'administration')} ({plural(g['rows'], 'row')}"
             f"{resolved}) {g['rule']}, e.g. {g['example']}", break_long=True)
    total = sum(g["administrations"] for g in groups)
    batches = plural(len({g["batch_id"] for g in groups}), "batch", "batches")
    echo(f"{plural(total, 'administration')} in {batches}. `tandem quarantine show BATCH` "
         "lists the rows.")


@quarantine_app.command("show")
def show_command(
    batch: Annotated[int, typer.Argument(help="The batch id.")],
    open_only: Annotated[bool, typer.Option(
        "--open", help="Only rows a reprocess has not resolved.")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the rows (with raw values, pseudonymised) as JSON.")] = False,
) -> None:
    """One batch's quarantined rows: where each is in the file, rule and reason."""
    from tandem.app.clikit import echo, plural, usage_error
    from tandem.core.settings import get_settings
    from tandem.pipeline.status import quarantine_rows

    found = quarantine_rows(get_settings(), batch, include_resolved=not open_only)
    if found is None:
        raise usage_error(f"there is no batch {batch}; `tandem quarantine list` names the "
                          "batches with quarantined rows.", "BATCH")
    if json_output:
        typer.echo(json.dumps(found, indent=1, default=str))
        return
    b = found["batch"]
    echo(f"Batch {b['batch_id']} of {b['clinic_id']}: {b['source_name']} ({b['status']}, "
         f"{b['trigger']}); {plural(len(found['rows']), 'quarantined row')}.")
    for r in found["rows"]:
        fate = f" [{r['resolution']}]" if r["resolution"] else ""
        echo(f"{r['source_ref']} {r['instrument']} {r['rule']}: {r['reason']}{fate}",
             indent="  ")
