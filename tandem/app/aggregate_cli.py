"""``tandem aggregate``: rebuild the marts and publish them, recorded in Prefect if configured.

Like ``tandem ingest`` it runs the Prefect-free pipeline here
(:func:`tandem.pipeline.aggregate.run_aggregate`) and, with a Prefect server configured,
records the run as one of the ``aggregate`` flow, with its ``tandem.marts.published`` event.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tandem.app.clikit import EXIT_DOWN, EXIT_NO_DATA, Failure, parse_date, plural, say, warn

if TYPE_CHECKING:
    from tandem.core.settings import Settings


def run_aggregate_command(settings: Settings, as_of: str | None = None, full: bool = False,
                          *, spinner: bool = True) -> tuple[dict, str | None]:
    """Publish the marts; returns the pipeline's summary and the Prefect run's page (or
    None). A usage-level refusal (nothing loaded yet) raises :class:`Failure`."""
    import sys

    from flows.events import marts_published_event
    from tandem.app.prefect_api import PrefectUnreachable, configured_api_url, recorded_run
    from tandem.core import warehouse
    from tandem.pipeline.aggregate import run_aggregate

    if warehouse.latest_batch_id(settings) == 0:
        raise Failure("nothing to publish: the warehouse holds no batches yet. Load files "
                      "first with `tandem ingest PATH...`.", EXIT_NO_DATA)
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    try:
        with recorded_run(configured_api_url(), "aggregate",
                          {"as_of": as_of, "full": full}) as run:
            if spinner and sys.stderr.isatty():
                from rich.console import Console

                with Console(stderr=True).status("building and publishing the marts"):
                    info = run_aggregate(settings, day, full)
            else:
                info = run_aggregate(settings, day, full)
            if run is not None:
                run.emit(*marts_published_event(info))
                run.log(20, published_sentence(info))
    except PrefectUnreachable as exc:
        raise Failure(f"{exc}. Start it (tandem serve), or unset PREFECT_API_URL to publish "
                      "without recording the run in Prefect; nothing was published.",
                      EXIT_DOWN) from None
    return info, (run.url if run is not None else None)


def published_sentence(info: dict[str, Any]) -> str:
    tables = info.get("tables") or {}
    rows = sum(int(n) for n in tables.values())
    recomputed = int(info.get("clients_recomputed") or 0)
    return (f"Published snapshot {info['version']}: {plural(len(tables), 'table')} with "
            f"{plural(rows, 'row')}; {plural(recomputed, 'client')} recomputed "
            f"({info.get('mode', 'full')} aggregate).")


def aggregate_command(
    as_of: Annotated[str | None, typer.Option(
        help="The reference date of the marts (open episodes, periods). Default: today.",
        metavar="DATE", callback=parse_date)] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Recompute every client's state, not only those that new batches "
                       "touched.")] = False,
) -> None:
    """Rebuild the marts and publish them for the dashboard.

    The new snapshot replaces the current one at once (readers never see half of it).
    Exit code 4 when the warehouse holds nothing to publish yet.
    """
    from tandem.core.settings import get_settings

    settings = get_settings()
    start = time.perf_counter()
    info, url = run_aggregate_command(settings, as_of, full)
    typer.echo(published_sentence(info) + f" ({time.perf_counter() - start:.1f} s)")
    if not int(info.get("responses") or 0):
        warn("no file has loaded any rows yet, so the marts are empty (the audit tables "
             "show why each file failed).")
    if url:
        say(f"Recorded in Prefect: {url}")
