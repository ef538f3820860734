"""``tandem users add``: add a dashboard user to ``TANDEM_HOME/users.yaml`` (bcrypt hash)."""

from __future__ import annotations

from typing import Annotated

import typer

from dashboards.auth import ROLES, add_user, load_users
from tandem.settings import get_settings

users_command = typer.Typer(help="Dashboard users (TANDEM_HOME/users.yaml).", no_args_is_help=True)


@users_command.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "director",
    clinic: Annotated[list[str] | None, typer.Option(
        help="A clinic the user may see (repeat); default all clinics.")] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    email: Annotated[str | None, typer.Option(help="E-mail for SSO (st.login) sign-in.")] = None,
    sso_only: Annotated[bool, typer.Option(help="No password: sign in through SSO only.")] = False,
) -> None:
    """Add or replace a user; the password is asked for (twice) and stored as a bcrypt hash."""
    password = None if sso_only else typer.prompt("password", hide_input=True,
                                                  confirmation_prompt=True)
    try:
        add_user(get_settings(), username, password, role, clinic, name, email)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(f"user {username} ({role}) saved")


@users_command.command("list")
def list_users() -> None:
    """The users, their roles and clinics (never the hashes)."""
    for username, entry in sorted(load_users(get_settings()).items()):
        clinics = ",".join(entry.get("clinics") or ["*"])
        typer.echo(f"{username}\t{entry.get('role')}\t{clinics}\t{entry.get('email') or ''}")
