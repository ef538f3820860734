"""``tandem users add|list``: dashboard users in ``TANDEM_HOME/users.yaml`` (bcrypt hashes)."""

from __future__ import annotations

from typing import Annotated

import typer

from tandem.app.clikit import check_clinics, join_words, typer_app

ROLES = ("director", "quality", "admin")  # dashboards.auth.ROLES; a test keeps them equal

users_command = typer_app("Dashboard users and their roles (in $TANDEM_HOME/users.yaml).")


@users_command.command("add")
def add(
    username: Annotated[str, typer.Argument(help="The sign-in name.", metavar="USERNAME",
                                            show_default=False)],
    role: Annotated[str, typer.Option(
        help=f"What the user sees: {join_words(ROLES, 'or')}.", metavar="ROLE")] = "director",
    clinic: Annotated[list[str] | None, typer.Option(
        help="A clinic the user may see (repeat for more). Default: every clinic.",
        metavar="CLINIC")] = None,
    name: Annotated[str, typer.Option(help="Display name. Default: the username.",
                                      metavar="TEXT", show_default=False)] = "",
    email: Annotated[str | None, typer.Option(
        help="E-mail address for single sign-on (st.login).", metavar="ADDRESS")] = None,
    sso_only: Annotated[bool, typer.Option(
        "--sso-only", help="No password: the user signs in through single sign-on only "
                           "(needs --email).")] = False,
) -> None:
    """Add a user, or replace one of the same name.

    The password is asked for twice (never on the command line) and stored as a bcrypt
    hash.
    """
    from dashboards.auth import add_user
    from tandem.core.settings import get_settings

    settings = get_settings()
    if role not in ROLES:  # checked before the password is asked for
        raise typer.BadParameter(f"{role!r} is not a role; use {join_words(ROLES, 'or')}.",
                                 param_hint="--role")
    if clinic:
        check_clinics(clinic, settings)
    if sso_only and not email:
        raise typer.BadParameter("a user who signs in through single sign-on only needs "
                                 "an e-mail address.", param_hint="--email")
    password = None if sso_only else typer.prompt("Password", hide_input=True,
                                                  confirmation_prompt=True)
    try:
        add_user(settings, username, password, role, clinic, name, email)
    except ValueError as err:
        raise typer.BadParameter(str(err).rstrip(".") + ".") from err
    sees = f"clinics {join_words(clinic)}" if clinic else "every clinic"
    typer.echo(f"Saved user {username} ({role}, sees {sees}).")


@users_command.command("list")
def list_users() -> None:
    """The users, their roles and clinics.

    Never the password hashes. One user a line, tab-separated: name, role, clinics
    (* for all), e-mail.
    """
    from dashboards.auth import load_users
    from tandem.core.settings import get_settings

    for username, entry in sorted(load_users(get_settings()).items()):
        clinics = ",".join(entry.get("clinics") or ["*"])
        typer.echo(f"{username}\t{entry.get('role')}\t{clinics}\t{entry.get('email') or ''}")
