"""The ``tandem`` command line.

Exit codes: 0 done; 1 an unexpected error; 2 a usage error; 3 some files failed (each is
recorded with its reason and kept for a re-run); 4 nothing published yet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tandem.settings import REPO_ROOT, get_settings

EXIT_FILES_FAILED = 3
EXIT_NOTHING_PUBLISHED = 4

app = typer.Typer(
    name="tandem",
    help="Tandem: outcome and alliance monitoring for counselling clinics.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def prepare_environment() -> None:
    """Keep Prefect's state under TANDEM_HOME and quiet, before Prefect is imported."""
    settings = get_settings()
    settings.ensure_dirs()
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Without a Prefect server configured (PREFECT_API_URL), flows start a temporary one;
    # give it time on a busy machine (Prefect's default is 20 s).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@app.callback()
def main() -> None:
    prepare_environment()


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; folders expanded to the files inside them, in name order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            )
        elif p.is_file():
            out.append(p)
        else:
            raise typer.BadParameter(f"{p} does not exist", param_hint="PATH")
    return out


def run_ingest(
    files: list[Path], clinic: str | None, trigger: str = "cli", as_of: str | None = None
) -> list[dict]:
    from flows import ingest as ingest_module

    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task("starting", total=len(files))

        def advance(result) -> None:
            progress.update(bar, advance=1, description=f"{result.source_name}: {result.status}")

        ingest_module.progress_hook = advance
        try:
            return ingest_module.ingest([str(f) for f in files], clinic, trigger, as_of)
        finally:
            ingest_module.progress_hook = None


def print_batches(results: list[dict]) -> None:
    table = Table(title="batches")
    for col in (
        "batch",
        "file",
        "clinic",
        "status",
        "received",
        "loaded",
        "quarantined",
        "duplicate",
        "reason",
    ):
        table.add_column(col)
    for r in results:
        table.add_row(
            str(r["batch_id"]),
            r["source_name"],
            r["clinic_id"] or "",
            r["status"],
            str(r["rows_received"]),
            str(r["rows_loaded"]),
            str(r["rows_quarantined"]),
            str(r["rows_duplicate"]),
            (r["reason"] or "")[:80],
        )
    console.print(table)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files, or folders of files, to ingest.")],
    clinic: Annotated[str | None, typer.Option(help="Clinic id, if the file does not say.")] = None,
    quiet: Annotated[bool, typer.Option(help="No table of batches.")] = False,
    as_of: Annotated[
        str | None,
        typer.Option(help="Sessions after this date (YYYY-MM-DD) count as future; default today."),
    ] = None,
) -> None:
    """Ingest files: validate every row, load the good ones, quarantine the rest."""
    files = expand_paths(paths)
    if not files:
        console.print("no files to ingest")
        raise typer.Exit(0)
    results = run_ingest(files, clinic, as_of=as_of)
    if not quiet:
        print_batches(results)
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        console.print(f"[red]{len(failed)} file(s) failed[/red]; kept for a re-run, see the table")
        raise typer.Exit(EXIT_FILES_FAILED)


@app.command()
def aggregate(
    as_of: Annotated[
        str | None, typer.Option(help="Reference date (YYYY-MM-DD), default today.")
    ] = None,
    full: Annotated[
        bool, typer.Option(help="Rebuild every client's state, not only those new batches touched.")
    ] = False,
) -> None:
    """Rebuild the marts from the warehouse and publish them for the dashboard."""
    from flows.aggregate import aggregate as aggregate_flow

    with console.status("aggregating and publishing marts"):
        info = aggregate_flow(as_of=as_of, full=full)
    console.print(
        f"published snapshot {info['version']}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(info["tables"].items()))
    )


@app.command()
def dashboard(
    port: Annotated[
        int | None, typer.Option(help="Port (default TANDEM_DASHBOARD_PORT, 8501).")
    ] = None,
) -> None:
    """Start the Streamlit dashboard (reads only published marts)."""
    settings = get_settings()
    port = port or settings.dashboard_port
    console.print(f"dashboard on [bold]http://localhost:{port}[/bold] (Ctrl+C to stop)")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "dashboards" / "app.py"),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    env = {**os.environ, "TANDEM_HOME": str(settings.home_dir)}
    try:
        raise typer.Exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def demo(
    serve: Annotated[bool, typer.Option(help="Start the dashboard at the end.")] = True,
    seed: Annotated[int, typer.Option(help="Seed for the generated data.")] = 7,
) -> None:
    """Generate a small multi-clinic data set, ingest, aggregate, and open the dashboard."""
    from tandem.demo import run_demo

    run_demo(console, seed=seed)
    if serve:
        dashboard(port=None)


def _register_optional_commands() -> None:
    """Commands contributed by other modules."""
    try:
        from tandem.synth.cli import generate_command
    except ImportError:  # pragma: no cover - the generator is part of the package
        pass
    else:
        app.command("generate")(generate_command)

    from dashboards.users_cli import users_command
    from tandem.serve_cli import serve_command, tokens_app

    app.command("serve")(serve_command)
    app.add_typer(tokens_app, name="tokens")
    from tandem.backup_cli import backup_command, restore_command

    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
    from flows.export_cli import export_command

    app.add_typer(users_command, name="users")

    export_app = typer.Typer(help="Export published data.", no_args_is_help=True)
    export_app.command("episodes")(export_command)
    app.add_typer(export_app, name="export")


_register_optional_commands()


if __name__ == "__main__":  # pragma: no cover
    app()
