"""The ``tandem`` command line: one Typer app; each command imports what it uses when run.

Importing this module loads Typer and the small command modules beside it, nothing of the
pipeline: ``tandem --help`` and shell completion stay fast. Exit codes are listed in
:mod:`tandem.app.clikit` and docs/operations.md.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tandem.app import clikit
from tandem.app.aggregate_cli import aggregate_command
from tandem.app.backup_cli import backup_command, restore_command
from tandem.app.contracts_cli import contracts_app
from tandem.app.dashboard_cli import dashboard_command
from tandem.app.demo_cli import demo_command
from tandem.app.export_cli import export_app
from tandem.app.generate_cli import generate_command
from tandem.app.ingest_cli import ingest_command
from tandem.app.lake_cli import maintain_command, migrate_command
from tandem.app.quarantine_cli import quarantine_app
from tandem.app.reprocess_cli import reprocess_command, republish_command
from tandem.app.retention_cli import purge_command
from tandem.app.serve_cli import health_command, serve_command, tokens_app
from tandem.app.status_cli import status_command
from tandem.app.users_cli import users_command
from tandem.app.worker_cli import worker_command

app = clikit.typer_app(
    "Tandem: outcome and alliance monitoring for counselling clinics.\n\n"
    "Everything it keeps lives in TANDEM_HOME (default ./tandem-data). Start with "
    "`tandem demo`, or see docs/operations.md for running it as a service.",
    name="tandem", add_completion=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tandem {version('tandem')}")
        except PackageNotFoundError:
            typer.echo("tandem (not installed: running from a source tree)")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show the libraries' log messages, and a traceback when "
                                "something unexpected fails.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Show Tandem's version and exit.", callback=_version,
        is_eager=True)] = False,
) -> None:
    import contextlib
    import signal

    from tandem.core.runtime import prepare_environment

    clikit.set_verbose(verbose)
    # SIGTERM stops a command like Ctrl+C: runs it records are closed, children stopped.
    with contextlib.suppress(ValueError):  # not the main thread (an embedding test runner)
        signal.signal(signal.SIGTERM, _interrupt)
    prepare_environment()


def _interrupt(signum: int, frame: object) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


app.command("ingest")(ingest_command)
app.command("aggregate")(aggregate_command)
app.command("generate")(generate_command)
app.command("dashboard")(dashboard_command)
app.command("demo")(demo_command)
app.command("serve")(serve_command)
app.command("health")(health_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.command("migrate")(migrate_command)
app.command("maintain")(maintain_command)
app.command("worker")(worker_command)
app.add_typer(contracts_app, name="contracts")
app.add_typer(tokens_app, name="tokens")
app.add_typer(users_command, name="users")
app.command("purge")(purge_command)
app.command("status")(status_command)
app.add_typer(quarantine_app, name="quarantine")
app.command("reprocess")(reprocess_command)
app.command("republish")(republish_command)
app.add_typer(export_app, name="export")


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="tandem")
