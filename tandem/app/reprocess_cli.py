"""``tandem reprocess`` (quarantined rows validated again after a contract or roster fix,
tandem.pipeline.reprocess) and ``tandem republish --as-of DATE`` (the marts as of a past
date, tandem.pipeline.republish). Like ``tandem ingest``, with a Prefect server configured
the run is recorded there and its batch events sent (the served pipeline then
re-publishes the marts)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tandem.app.clikit import EXIT_DOWN, EXIT_NO_DATA, Failure, parse_date


def reprocess_command(
    clinic: Annotated[list[str] | None, typer.Option(
        "--clinic", help="Only this clinic (repeat for more).")] = None,
    batch: Annotated[list[int] | None, typer.Option(
        "--batch", help="Only the quarantine of this batch (repeat for more).")] = None,
    reason: Annotated[list[str] | None, typer.Option(
        "--reason", help="Only administrations quarantined by this rule, e.g. "
                         "known_therapist (repeat for more).")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one entry per batch looked at as JSON on stdout.")] = False,
) -> None:
    """Validate quarantined rows again under the current contracts (after a fix).

    Rows that now pass are loaded (once: answers loaded already count as duplicates)
    under a batch of their own (trigger reprocess) that names the original file; rows
    failing for other reasons than before are quarantined again with the current ones.
    Reprocessed rows are marked, so running it again does nothing. Then run `tandem
    aggregate` (a served pipeline re-publishes by itself)."""
    from flows.events import batch_finished_event
    from tandem.app.clikit import check_clinics, echo, plural, say
    from tandem.app.prefect_api import PrefectUnreachable, configured_api_url, recorded_run
    from tandem.core.settings import get_settings
    from tandem.pipeline.reprocess import Scope, reprocess

    settings = get_settings()
    check_clinics(clinic or [], settings)
    scope = Scope(tuple(clinic or ()), tuple(batch or ()), tuple(reason or ()))
    try:
        with recorded_run(configured_api_url(), "reprocess",
                          {"clinics": clinic, "batches": batch, "reasons": reason}) as run:
            results = reprocess(settings, scope,
                                flow_run_id=run.id if run is not None else None)
            if run is not None:
                for r in results:
                    if r.batch_id is not None:
                        run.emit(*batch_finished_event(
                            {**r.summary(), "status": "reprocessed"}, "reprocess"))
    except PrefectUnreachable as exc:
        raise Failure(f"{exc}. Start it (tandem serve), or unset PREFECT_API_URL to reprocess "
                      "without recording the run in Prefect; nothing was reprocessed.",
                      EXIT_DOWN) from None
    if json_output:
        typer.echo(json.dumps([r.summary() for r in results], indent=1, default=str))
        return
    if not results:
        echo("Nothing is quarantined" + (" there" if clinic or batch or reason else "")
             + ": nothing to reprocess.")
        return
    for r in results:
        if r.status == "reprocessed":
            echo(f"batch {r.of_batch_id} ({r.clinic_id}, {r.source_name}): "
                 f"{plural(r.loaded, 'administration')} loaded ({plural(r.rows_loaded, 'row')}"
                 f", {plural(r.rows_duplicate, 'duplicate')}), {r.requarantined} quarantined "
                 f"again, {r.unchanged} unchanged; recorded as batch {r.batch_id}.")
        elif r.status == "skipped":
            echo(f"batch {r.of_batch_id} ({r.clinic_id}, {r.source_name}): {r.reason}.")
        else:
            echo(f"batch {r.of_batch_id} ({r.clinic_id}, {r.source_name}): "
                 f"{plural(r.unchanged or r.administrations, 'administration')} still "
                 "failing for the same reasons; left as they are.")
    made = [r for r in results if r.batch_id is not None]
    loaded = sum(r.rows_loaded for r in made)
    echo(f"Reprocessed {plural(len(made), 'batch', 'batches')}: {plural(loaded, 'row')} "
         "loaded." + (" Run `tandem aggregate` to publish them." if loaded else ""))
    if run is not None:
        say(f"Recorded in Prefect: {run.url}")


def republish_command(
    as_of: Annotated[str, typer.Option(
        help="The date of the view: sessions on or before it, episodes open on it.",
        metavar="DATE", callback=parse_date)],
) -> None:
    """Publish the marts as of a past date, for a historical view.

    Everything known now about sessions up to DATE counts. The next `tandem aggregate`
    (or batch, when served) publishes the present again. Exit code 4 when no answer is
    held on or before DATE."""
    import datetime as dt

    from tandem.app.clikit import echo, plural
    from tandem.core.settings import get_settings
    from tandem.pipeline.republish import NothingToPublish, republish

    try:
        info = republish(get_settings(), dt.date.fromisoformat(as_of))
    except NothingToPublish as exc:
        raise Failure(f"nothing to publish: {exc}.", EXIT_NO_DATA) from None
    echo(f"Published snapshot {info['version']} as of {info['as_of']}: "
         f"{plural(len(info['tables']), 'table')} from {plural(info['responses'], 'answer')} "
         f"of {plural(info['clients_recomputed'], 'client')}. `tandem aggregate` publishes "
         "the present again.")
