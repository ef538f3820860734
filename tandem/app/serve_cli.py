"""``tandem serve``, ``tandem health`` and ``tandem tokens ...`` (registered in tandem/app/cli.py).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tandem.app.clikit import EXIT_DOWN, EXIT_USAGE, Failure, check_clinics, typer_app


def serve_command(
    host: Annotated[str, typer.Option(
        help="Address of the Prefect server and the batch endpoint (127.0.0.1: this "
             "machine only).", metavar="ADDRESS")] = "127.0.0.1",
    prefect_port: Annotated[int, typer.Option(
        help="Port of the Prefect server and its UI.", metavar="PORT")] = 4200,
    api_port: Annotated[int, typer.Option(help="Port of the batch endpoint.",
                                          metavar="PORT")] = 8765,
    prefect_api_url: Annotated[str | None, typer.Option(
        help="Use this Prefect server (e.g. one on PostgreSQL) instead of starting one, "
             "e.g. http://host:4200/api.", metavar="URL")] = None,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Serve the Prefect UI.")] = True,
    watcher: Annotated[bool, typer.Option("--watcher/--no-watcher",
                                          help="Watch the inbox folders.")] = True,
    api: Annotated[bool, typer.Option("--api/--no-api",
                                      help="Start the batch endpoint.")] = True,
    dashboard: Annotated[bool, typer.Option(
        "--dashboard/--no-dashboard",
        help="Serve the dashboard too (on TANDEM_DASHBOARD_ADDRESS and _PORT).")] = True,
    work_pool: Annotated[str | None, typer.Option(
        help="Register the deployments with this Prefect work pool instead of running them "
             "here; `tandem worker` processes run them (docs/scaling.md).",
        metavar="POOL")] = None,
) -> None:
    """Run the pipeline as a service until Ctrl+C or SIGTERM.

    Starts a Prefect server, the deployments (event triggers, schedules and the
    notification automations), the inbox watcher, the batch endpoint and the dashboard,
    then prints where to look. If one of them dies the others are stopped and the exit
    code is 1, for a service manager to restart it; none outlives this command.
    """
    from tandem.app.serve import ServeOptions, run
    from tandem.core.settings import get_settings

    opts = ServeOptions(host=host, prefect_port=prefect_port, api_port=api_port,
                        prefect_api_url=prefect_api_url, ui=ui, watcher=watcher, api=api,
                        dashboard=dashboard, work_pool=work_pool)
    code = run(get_settings(), opts, say=lambda line: print(line, flush=True))
    raise typer.Exit(code)


def health_command(
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print each part's state as JSON on stdout.")] = False,
) -> None:
    """Say which part of the service is up and which is down.

    Checks what tandem serve started (Prefect server, deployments, watcher, endpoint,
    dashboard) and the data (warehouse, published marts) and the notifications. Exit
    code 5 if a part is down.
    """
    from tandem.app.health import check_health, render
    from tandem.core.settings import get_settings

    parts = check_health(get_settings())
    if json_output:
        typer.echo(json.dumps({"ok": all(p.ok for p in parts),
                               "parts": [p.to_json() for p in parts]}, indent=1))
    else:
        typer.echo(render(parts))
    if not all(p.ok for p in parts):
        raise typer.Exit(EXIT_DOWN)


tokens_app = typer_app("Per-clinic tokens for the batch endpoint (stored as hashes).")


@tokens_app.command("issue")
def tokens_issue(clinic_id: Annotated[str, typer.Argument(
        help="The clinic's id (it needs a contract).", metavar="CLINIC",
        show_default=False)]) -> None:
    """Make a new token for a clinic; its old one stops working.

    The token is printed once, on stdout; give it to the clinic over a secure channel.
    """
    from tandem.app.api import issue_token
    from tandem.core.settings import get_settings

    settings = get_settings()
    check_clinics([clinic_id], settings, param_hint="CLINIC")
    try:
        token = issue_token(settings, clinic_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).rstrip(".") + ".", param_hint="CLINIC") from exc
    typer.echo(token)
    typer.echo(f"Issued a token for {clinic_id}. It is shown only now: give it to the clinic "
               "over a secure channel.", err=True)


@tokens_app.command("revoke")
def tokens_revoke(clinic_id: Annotated[str, typer.Argument(
        help="The clinic's id.", metavar="CLINIC", show_default=False)]) -> None:
    """Stop a clinic's token from working."""
    from tandem.app.api import revoke_token
    from tandem.core.settings import get_settings

    if not revoke_token(get_settings(), clinic_id):
        raise Failure(f"{clinic_id} has no token to revoke (see `tandem tokens list`).",
                      EXIT_USAGE)
    typer.echo(f"Revoked the token of {clinic_id}.", err=True)


@tokens_app.command("list")
def tokens_list() -> None:
    """Clinics with a token and when it was issued.

    The tokens themselves are never shown again. One clinic a line, tab-separated:
    clinic, time of issue.
    """
    from tandem.app.api import load_tokens
    from tandem.core.settings import get_settings

    for clinic, entry in sorted(load_tokens(get_settings()).items()):
        typer.echo(f"{clinic}\t{entry.get('issued_at', '')}")
