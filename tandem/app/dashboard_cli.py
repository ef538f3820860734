"""``tandem dashboard``: the Streamlit app, as a child that stops when this command stops."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tandem.app.clikit import say

if TYPE_CHECKING:
    from tandem.core.settings import Settings


def dashboard_cmd(settings: Settings, port: int, address: str) -> list[str]:
    """The Streamlit command line for the dashboard on ``address:port``."""
    from importlib.resources import files

    return [sys.executable, "-m", "streamlit", "run", str(files("dashboards") / "app.py"),
            "--server.port", str(port), "--server.address", address,
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false"]


def dashboard_env(settings: Settings) -> dict[str, str]:
    return {**os.environ, "TANDEM_HOME": str(settings.home_dir),
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}


def dashboard_url(address: str, port: int) -> str:
    host = "localhost" if address in ("127.0.0.1", "localhost", "::1") else address
    return f"http://{host}:{port}"


def run_dashboard(settings: Settings, port: int | None = None,
                  address: str | None = None) -> int:
    """Serve the dashboard until Ctrl+C or SIGTERM; Streamlit stops with it."""
    from tandem.app.children import run_in_foreground

    port = port or settings.dashboard_port
    address = address or settings.dashboard_address
    say(f"Dashboard on {dashboard_url(address, port)} (listening on {address} only). "
        "Press Ctrl+C to stop.")
    return run_in_foreground(dashboard_cmd(settings, port, address), dashboard_env(settings))


def dashboard_command(
    port: Annotated[int | None, typer.Option(
        help="Port to listen on. Default: TANDEM_DASHBOARD_PORT (8501).", metavar="PORT",
        min=1, max=65535)] = None,
    address: Annotated[str | None, typer.Option(
        help="Address to listen on. Default: TANDEM_DASHBOARD_ADDRESS (127.0.0.1, this "
             "machine only); 0.0.0.0 serves every interface, behind a TLS proxy only.",
        metavar="ADDRESS")] = None,
) -> None:
    """Serve the dashboard (it reads only published marts).

    Stops with Ctrl+C or SIGTERM, and takes the Streamlit server down with it.
    """
    from tandem.core.settings import get_settings

    raise typer.Exit(run_dashboard(get_settings(), port, address))
