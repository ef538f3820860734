"""``tandem ingest``: validate and load files, without Prefect; recorded there when configured.

The pipeline runs in this process (:func:`tandem.pipeline.ingest.ingest_paths`). With a
Prefect server configured, the run is recorded there as a run of the ``ingest`` flow, with
the same ``tandem.batch.*`` events the flow sends (:mod:`tandem.app.prefect_api`); without
one, Prefect is not involved at all, so no temporary server is started (nor left behind).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tandem.app.clikit import (
    EXIT_DOWN,
    EXIT_FILES_FAILED,
    Failure,
    check_clinics,
    echo,
    humanize,
    join_words,
    parse_date,
    plural,
    say,
)

if TYPE_CHECKING:
    from tandem.core.settings import Settings

STATUS_WORDS = {"loaded": "loaded", "failed": "failed", "duplicate_file": "duplicate",
                "superseded": "superseded"}
# The same, counted in a sentence ("3 loaded, 2 already loaded and 1 failed").
SUMMARY_WORDS = {"loaded": "loaded", "duplicate_file": "already loaded", "superseded":
                 "superseded", "failed": "failed"}


def _print_skipped(skipped: list[tuple[Path, str]]) -> None:
    shown = skipped[:30]
    echo(f"Skipped {plural(len(skipped), 'path')} that {'is' if len(skipped) == 1 else 'are'} "
         "not a delivery:", err=True)
    for path, reason in shown:
        echo(f"{path}: {reason}", err=True, indent="  ")
    if len(skipped) > len(shown):
        echo(f"... and {len(skipped) - len(shown)} more.", err=True, indent="  ")


def expand_paths(paths: list[Path],
                 report: Callable[[list[tuple[Path, str]]], None] | None = _print_skipped,
                 ) -> list[Path]:
    """Files as given; folders expanded to the deliveries under them, in name order.

    What is skipped (files that are not deliveries, symbolic links, named pipes and other
    special files; tandem.pipeline.deliveries) is passed to ``report`` with its reason
    (printed by default), never read."""
    from tandem.pipeline.deliveries import expand

    try:
        found = expand(paths)
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{exc.args[0]} does not exist", param_hint="PATH") from None
    if found.skipped and report is not None:
        report(found.skipped)
    return found.files


@dataclass
class IngestOutcome:
    """What one ``tandem ingest`` did: a summary per file, and where Prefect shows it."""

    results: list[dict] = field(default_factory=list)
    flow_run_url: str | None = None
    flow_run_name: str | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if r["status"] == "failed"]

    def counts(self) -> dict[str, int]:
        by_status = Counter(r["status"] for r in self.results)
        return {
            "files": len(self.results),
            **{s: by_status.get(s, 0) for s in STATUS_WORDS},
            "rows_received": sum(r["rows_received"] for r in self.results),
            "rows_loaded": sum(r["rows_loaded"] for r in self.results),
            "rows_quarantined": sum(r["rows_quarantined"] for r in self.results),
            "rows_duplicate": sum(r["rows_duplicate"] for r in self.results),
        }

    def to_json(self) -> dict[str, Any]:
        return {"files": self.results, "summary": self.counts(),
                "prefect_flow_run": self.flow_run_url}


def run_ingest(settings: Settings, files: list[Path], clinic: str | None,
               trigger: str = "cli", as_of: str | None = None, *,
               progress: bool = True) -> IngestOutcome:
    """Ingest ``files`` in this process; record the run in Prefect when a server is
    configured. Raises :class:`Failure` (exit 5) when that server does not answer."""
    from tandem.quality.gx_runner import warm_up_validator

    if files:  # GX's import (seconds) runs in the background while the rest starts up
        warm_up_validator()
    from flows.alerts import quarantine_alert
    from flows.events import batch_finished_event
    from tandem.app.prefect_api import PrefectUnreachable, configured_api_url, recorded_run
    from tandem.pipeline.ingest import ingest_paths

    api_url = configured_api_url()
    outcome = IngestOutcome()
    parameters = {"paths": [str(f) for f in files], "clinic_id": clinic, "trigger": trigger,
                  "as_of": as_of}
    try:
        with recorded_run(api_url, "ingest", parameters) as run, \
                _Progress(len(files), progress) as advance:
            if run is not None:
                outcome.flow_run_url, outcome.flow_run_name = run.url, run.name

            def on_result(result: Any) -> None:
                summary = result.summary()
                advance(summary)
                if run is None:
                    return
                level = logging.WARNING if summary["status"] == "failed" else logging.INFO
                run.log(level, _log_line(summary))
                run.emit(*batch_finished_event(summary, trigger))

            outcome.results = ingest_paths(
                [str(f) for f in files], clinic, trigger, as_of, settings=settings,
                flow_run_id=run.id if run else None, on_result=on_result)
            if run is None:
                return outcome
            for summary in outcome.results:  # after the load: the writer lock is released
                alert = quarantine_alert(settings, summary)
                if alert is not None:
                    run.emit(*alert)
            if outcome.failed:
                run.finish("COMPLETED", f"{plural(len(outcome.failed), 'file')} failed; "
                                        "each is recorded with its reason")
    except PrefectUnreachable as exc:
        raise Failure(
            f"{exc}. Start it (tandem serve), or unset PREFECT_API_URL to run without "
            "recording the run in Prefect; nothing was ingested.", EXIT_DOWN) from None
    return outcome


def _log_line(r: dict) -> str:
    counts = (f"received {r['rows_received']}, loaded {r['rows_loaded']}, quarantined "
              f"{r['rows_quarantined']}, duplicate {r['rows_duplicate']}")
    return f"{r['source_name']}: {r['status']} ({counts})" + (
        f": {r['reason']}" if r.get("reason") else "")


class _Progress:
    """A progress bar on the terminal (nothing when stderr is not one, or when quiet)."""

    def __init__(self, total: int, enabled: bool) -> None:
        import sys

        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None

    def __enter__(self):
        if not self.enabled:
            return lambda summary: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = Progress(TextColumn("ingesting"), BarColumn(bar_width=24),
                                  MofNCompleteColumn(), TextColumn("{task.description}"),
                                  console=Console(stderr=True), transient=True)
        self._progress.__enter__()
        task = self._progress.add_task("", total=self.total)

        def advance(summary: dict) -> None:
            self._progress.update(task, advance=1, description=summary["source_name"][:30])

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def batches_table(results: list[dict]) -> Any:
    """The files as a table that reads at 80 columns: one row per file, under a line
    naming its clinic (reasons of failed files are listed below the table)."""
    from itertools import groupby

    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("file", overflow="fold")
    table.add_column("status", no_wrap=True)
    for name in ("loaded", "quarantined", "duplicate"):
        table.add_column(name, justify="right", no_wrap=True)
    def clinic(r: dict) -> str:
        return r["clinic_id"] or "clinic unknown"

    for name, rows in groupby(sorted(results, key=clinic), key=clinic):
        table.add_row(f"[bold]{name}[/bold]")
        for r in rows:
            table.add_row(f"  {r['source_name']}", STATUS_WORDS.get(r["status"], r["status"]),
                          f"{r['rows_loaded']:,}", f"{r['rows_quarantined']:,}",
                          f"{r['rows_duplicate']:,}")
    return table


def summary_sentence(outcome: IngestOutcome) -> str:
    c = outcome.counts()
    parts = [f"{c[s]:,} {word}" for s, word in SUMMARY_WORDS.items() if c[s]]
    rows = f"{plural(c['rows_loaded'], 'row')} loaded and {c['rows_quarantined']:,} quarantined"
    if c["rows_duplicate"]:
        rows += f"; {c['rows_duplicate']:,} were loaded before and skipped"
    return f"Ingested {plural(c['files'], 'file')} ({join_words(parts)}): {rows}."


def print_report(outcome: IngestOutcome, table: bool) -> None:
    """The table (stdout), the summary, each failed file with its reason, the Prefect run."""
    if table and outcome.results:
        from rich.console import Console

        Console(width=_width()).print(batches_table(outcome.results))
    echo(summary_sentence(outcome))
    failed = outcome.failed
    if failed:
        echo(f"{plural(len(failed), 'file')} failed and "
             f"{'is' if len(failed) == 1 else 'are'} kept for a re-run:")
        for r in failed:
            echo(f"{r['source_name']}: {humanize(r['reason'] or 'no reason recorded')}",
                 indent="  ", break_long=True)
    if outcome.flow_run_url:
        echo(f"Recorded in Prefect as flow run {outcome.flow_run_name}: "
             f"{outcome.flow_run_url}")


def _width() -> int:
    import shutil

    return min(shutil.get_terminal_size((80, 24)).columns, 100)


def ingest_command(
    paths: Annotated[list[Path], typer.Argument(
        help="Files, or folders of files (read in name order), to ingest.", metavar="PATH",
        show_default=False)],
    clinic: Annotated[str | None, typer.Option(
        help="The clinic that sent the files, when neither the folder (inbox/<clinic>/) nor "
             "the rows say.", metavar="CLINIC")] = None,
    as_of: Annotated[str | None, typer.Option(
        help="Sessions after this date count as future (a quarantine rule). Default: today.",
        metavar="DATE", callback=parse_date)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar and no table: the summary and any failed "
                              "files only.")] = False,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print the outcome as JSON on stdout (one entry per file) instead of "
                       "the table.")] = False,
) -> None:
    """Validate files and load them into the warehouse.

    Good rows are loaded, bad rows are quarantined with a reason. Each file becomes
    one batch, loaded all or nothing; a file loaded before is skipped. Exit code 3 if
    any file failed (each is recorded with its reason and kept for a re-run).

    With PREFECT_API_URL set, the run is also recorded in Prefect as a run of the
    ingest flow, and the served pipeline publishes the marts after it.
    """
    from tandem.core.settings import get_settings

    settings = get_settings()
    if clinic is not None:
        check_clinics([clinic], settings)
    files = expand_paths(paths)
    if not files:
        if json_output:
            typer.echo(json.dumps(IngestOutcome().to_json(), indent=1))
        else:
            say(f"Nothing to ingest: {join_words(str(p) for p in paths)} "
                f"{'holds' if len(paths) == 1 else 'hold'} no files.")
        return
    outcome = run_ingest(settings, files, clinic, as_of=as_of,
                         progress=not (quiet or json_output))
    if json_output:
        typer.echo(json.dumps(outcome.to_json(), indent=1, default=str))
    else:
        print_report(outcome, table=not quiet)
    if outcome.failed:
        raise typer.Exit(EXIT_FILES_FAILED)
