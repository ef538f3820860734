"""Command-line entry points for running Tandem as a service.

Registered in ``tandem/cli.py`` as ``tandem serve`` and ``tandem tokens ...``; also
runnable alone: ``python -m tandem.serve_cli serve``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tandem.settings import get_settings


def serve_command(
    host: Annotated[str, typer.Option(help="Interface for the Prefect server and endpoint.")]
    = "127.0.0.1",
    prefect_port: Annotated[int, typer.Option(help="Prefect server (and UI) port.")] = 4200,
    api_port: Annotated[int, typer.Option(help="Batch endpoint port.")] = 8765,
    prefect_api_url: Annotated[str | None, typer.Option(
        help="Use this running Prefect server (e.g. one on PostgreSQL) instead of starting "
             "one: http://host:4200/api")] = None,
    ui: Annotated[bool, typer.Option(help="Serve the Prefect UI.")] = True,
    watcher: Annotated[bool, typer.Option(help="Watch the inbox folders.")] = True,
    api: Annotated[bool, typer.Option(help="Start the batch endpoint.")] = True,
) -> None:
    """Run the pipeline as a service: Prefect server, deployments, inbox watcher, endpoint."""
    from tandem.serve import ServeOptions, run

    opts = ServeOptions(host=host, prefect_port=prefect_port, api_port=api_port,
                        prefect_api_url=prefect_api_url, ui=ui, watcher=watcher, api=api)
    code = run(get_settings(), opts, say=lambda line: print(line, flush=True))
    raise typer.Exit(code)


tokens_app = typer.Typer(help="Per-clinic tokens for the batch endpoint.", no_args_is_help=True)


@tokens_app.command("issue")
def tokens_issue(clinic_id: Annotated[str, typer.Argument(help="The clinic's id.")]) -> None:
    """Make a new token for a clinic (the old one stops working). Printed once."""
    from tandem.api import issue_token
    from tandem.contracts import load_clinic_contracts

    settings = get_settings()
    if clinic_id not in load_clinic_contracts(settings):
        print(f"warning: no contract for clinic {clinic_id!r} yet", file=sys.stderr)
    try:
        token = issue_token(settings, clinic_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    print(token)
    print(f"token for {clinic_id} issued; it is shown only now, give it to the clinic over a "
          "secure channel", file=sys.stderr)


@tokens_app.command("revoke")
def tokens_revoke(clinic_id: Annotated[str, typer.Argument(help="The clinic's id.")]) -> None:
    """Stop a clinic's token from working."""
    from tandem.api import revoke_token

    if not revoke_token(get_settings(), clinic_id):
        print(f"no token for {clinic_id}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"token for {clinic_id} revoked", file=sys.stderr)


@tokens_app.command("list")
def tokens_list() -> None:
    """Clinics with a token, and when it was issued (never the tokens themselves)."""
    from tandem.api import load_tokens

    for clinic, entry in sorted(load_tokens(get_settings()).items()):
        print(f"{clinic}\t{entry.get('issued_at', '')}")


app = typer.Typer(no_args_is_help=True, add_completion=False)
app.command("serve")(serve_command)
app.add_typer(tokens_app, name="tokens")


@app.callback()
def _main() -> None:
    from tandem.cli import prepare_environment

    prepare_environment()


if __name__ == "__main__":  # pragma: no cover
    app()
