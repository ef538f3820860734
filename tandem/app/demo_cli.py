"""``tandem demo`` (registered by tandem.app.cli); the work is in :mod:`tandem.app.demo`."""

from __future__ import annotations

from typing import Annotated

import typer


def demo_command(
    serve: Annotated[bool, typer.Option(
        "--serve/--no-serve", help="Serve the dashboard at the end.")] = True,
    seed: Annotated[int, typer.Option(help="Seed for the generated data.", metavar="N")] = 7,
) -> None:
    """Try Tandem on a small generated data set, then open the dashboard.

    Generates a multi-clinic data set, ingests it, publishes the marts and serves the
    dashboard.
    Everything goes into TANDEM_HOME (default ./tandem-data); running it again changes
    nothing. Ctrl+C or SIGTERM stops the dashboard, and nothing is left running.
    """
    from rich.console import Console

    from tandem.app.dashboard_cli import run_dashboard
    from tandem.app.demo import run_demo
    from tandem.core.settings import get_settings

    settings = get_settings()
    run_demo(Console(stderr=True), settings, seed=seed)
    if serve:
        raise typer.Exit(run_dashboard(settings))
