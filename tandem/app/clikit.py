"""What every ``tandem`` command shares: exit codes, help layout, messages, quiet libraries.

Imports Typer (and its bundled Click) only: ``tandem --help`` must not load the pipeline.

Exit codes (docs/operations.md lists them; tests keep them):

== ==========================================================================================
0  done
1  an unexpected error (a fault in Tandem or its surroundings, not in the input); ``-v`` shows
   the traceback
2  a usage error: a bad option or argument, an unknown clinic, a missing file, a site
   contract that cannot be used
3  some files failed: each is recorded with its reason (ingest: data files, kept for a
   re-run; ``contracts check``: contract files)
4  no data: nothing published yet, nothing loaded to publish, or an export with no rows
5  a part of the service is down (``health``), or the Prefect server a command needs does
   not answer
130 interrupted (Ctrl+C)
== ==========================================================================================
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

import typer
from typer import _click as click
from typer._click.exceptions import ClickException
from typer.core import TyperCommand, TyperGroup

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FILES_FAILED = 3
EXIT_NO_DATA = 4
EXIT_DOWN = 5
EXIT_INTERRUPTED = 130

# Help texts are laid out for this many columns at most (wider terminals get the same).
HELP_WIDTH = 80
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH}

_state = {"verbose": False}


def verbose() -> bool:
    return _state["verbose"]


# --- words for people ------------------------------------------------------------------------

def join_words(items: Iterable[object], conjunction: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    words = [str(i) for i in items]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def humanize(text: str) -> str:
    """Python list literals in a message (``missing ['ors_3', 'ors_4']``) as words for
    people (``missing ors_3 and ors_4``); the rest of the text as it is."""
    import re

    def words(match: re.Match[str]) -> str:
        return join_words(re.findall(r"'([^']*)'", match.group(0)))

    return re.sub(r"\[(?:'[^'\]]*'(?:,\s*)?)+\]", words, text)


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``, ``1,200 rows``."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def wrap(text: str, indent: str = "", break_long: bool = False) -> str:
    """``text`` wrapped to the terminal's width (at most 100 columns), each paragraph kept;
    words longer than a line (paths, commands) are kept whole unless ``break_long``."""
    import shutil
    import textwrap

    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    return "\n".join(textwrap.fill(line, width, initial_indent=indent,
                                   subsequent_indent=indent + "  " if indent else "",
                                   break_long_words=break_long, break_on_hyphens=False)
                      if line else "" for line in text.split("\n"))


def echo(message: str = "", err: bool = False, indent: str = "",
         break_long: bool = False) -> None:
    """A sentence on stdout (results) or stderr, wrapped for the terminal."""
    typer.echo(wrap(message, indent, break_long), err=err)


def say(message: str = "") -> None:
    """A message for the person at the terminal (stderr: stdout is kept for results)."""
    echo(message, err=True)


def warn(message: str) -> None:
    echo(f"Warning: {message}", err=True)


class Failure(ClickException):
    """A command could not do its work, for a reason the message gives as a sentence."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = code

    def show(self, file: Any = None) -> None:
        echo(f"Error: {self.format_message()}", err=True)


def usage_error(message: str, param_hint: str | None = None) -> typer.BadParameter:
    """A usage error (exit 2) about one option or argument; raise it."""
    return typer.BadParameter(message, param_hint=param_hint)


# --- values ----------------------------------------------------------------------------------

def parse_date(value: str | None) -> str | None:
    """Typer callback for ``--as-of``-style options: YYYY-MM-DD, else a usage error."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; write it as YYYY-MM-DD, "
                                 "for example 2026-06-30.") from None


def check_clinics(clinics: Sequence[str], settings: Any, param_hint: str = "--clinic") -> None:
    """A usage error unless every clinic id has a contract (shipped or the site's)."""
    from tandem.core.contracts import load_clinic_contracts

    known = load_clinic_contracts(settings)
    unknown = [c for c in clinics if c not in known]
    if not unknown:
        return
    which = join_words(repr(c) for c in unknown)
    noun = "clinic" if len(unknown) == 1 else "clinics"
    have = (f"Clinics with a contract: {join_words(sorted(known))}." if known else
            "No clinic has a contract yet.")
    raise usage_error(
        f"no contract for {noun} {which}. {have} Add one as "
        f"{settings.local_contracts_dir / 'clinics'}/<clinic_id>.yaml "
        "(see `tandem contracts check`).", param_hint)


# --- library logging -------------------------------------------------------------------------

class _Formatter(logging.Formatter):
    """``Warning: message`` for Tandem's own records, ``Warning (library): message`` else."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and verbose():
            text += "\n" + self.formatException(record.exc_info)
        level = record.levelname.title()
        if record.name.startswith(("tandem", "flows")):
            return f"{level}: {text}"
        return f"{level} ({record.name.split('.')[0]}): {text}"


LIBRARY_LOGGERS = ("great_expectations", "prefect", "apprise", "httpx", "httpcore", "urllib3",
                   "asyncio", "streamlit", "watchfiles", "filelock")


def quiet_libraries(verbose_: bool) -> None:
    """Libraries log at WARNING (INFO with ``-v``), in one plain format on stderr.

    Set before any of them is imported: Prefect reads its level from the environment."""
    level = logging.INFO if verbose_ else logging.WARNING
    if verbose_:
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_tandem", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        handler._tandem = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    # The handler's own level too: some libraries set their loggers' levels when imported.
    handler.setLevel(level)
    root.setLevel(level)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


def set_verbose(value: bool) -> None:
    _state["verbose"] = value
    quiet_libraries(value)


# --- help layout -----------------------------------------------------------------------------

def _option_names(param: click.Option) -> str:
    names = ", ".join(sorted(param.opts, key=lambda o: (o.startswith("--"), o)))
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not param.is_flag and not param.count:
        metavar = param.metavar or param.name.upper()
        names += f" {metavar}"
        if param.multiple:
            names += " ..."
    return names


def _default_text(param: click.Option) -> str:
    if not param.show_default or param.name == "help":
        return ""
    default = param.default
    if param.is_flag:
        if param.secondary_opts and default:
            return "[on by default]"
        return ""
    if default in (None, "", (), []) or callable(default):
        return ""
    if isinstance(default, list | tuple):
        default = ", ".join(map(str, default))
    return f"[default: {default}]"


def _records(command: click.Command, ctx: click.Context) -> tuple[list, list]:
    arguments, options = [], []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if param.param_type_name == "argument":
            name = param.metavar or param.name.upper()
            if param.nargs != 1:
                name += "..."
            arguments.append((name, param.help or ""))  # type: ignore[attr-defined]
        elif param.param_type_name == "option":
            help_text = " ".join(filter(None, [param.help or "", _default_text(param)]))
            options.append((_option_names(param), help_text))
    return arguments, options


def _usage_pieces(command: click.Command, ctx: click.Context) -> list[str]:
    pieces = []
    params = command.get_params(ctx)
    if any(p.param_type_name == "option" and p.name != "help" for p in params):
        pieces.append("[OPTIONS]")
    for p in params:
        if p.param_type_name != "argument":
            continue
        name = (p.metavar or p.name.upper()) + ("..." if p.nargs != 1 else "")
        pieces.append(name if p.required else f"[{name}]")
    return pieces


class TandemCommand(TyperCommand):
    """A command whose help reads as plain text at 80 columns: metavars, no type names."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return _usage_pieces(self, ctx)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.collect_usage_pieces(ctx):
            super().format_usage(ctx, formatter)
        else:  # a command without arguments or options still has a usage line
            formatter.write(f"Usage: {ctx.command_path}\n")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments, options = _records(self, ctx)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)


class TandemGroup(TyperGroup):
    """A command group: the same help layout, and unexpected errors told as a sentence.

    Its commands get :class:`TandemCommand`'s help layout however they were registered
    (``app.command("x")(fn)`` is enough)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            if type(command) is TyperCommand:
                command.__class__ = TandemCommand

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*_usage_pieces(self, ctx), "COMMAND [ARGS]..."]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _, options = _records(self, ctx)
        if options:
            with formatter.section("Options"):
                formatter.write_dl(options)
        self.format_commands(ctx, formatter)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            say("Interrupted.")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as exc:  # noqa: BLE001 - told as a sentence, traceback with -v
            if ctx.parent is not None:  # only the outermost group reports
                raise
            contracts = sys.modules.get("tandem.core.contracts")
            if contracts is not None and isinstance(exc, contracts.ContractError):
                say(f"Error: the contract {exc.path} cannot be used: "
                    f"{' '.join(exc.problems)} Fix it (`tandem contracts check` lists every "
                    "problem) and run the command again.")
                raise typer.Exit(EXIT_USAGE) from None
            if verbose():
                traceback.print_exc()
            detail = str(exc).strip().rstrip(".") or "no detail given"
            say(f"Error: unexpected {type(exc).__name__}: {detail}.")
            if not verbose():
                say("This is not a problem with your input. Run the command again with -v "
                    "to see where it happened.")
            raise typer.Exit(EXIT_ERROR) from None


def typer_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """A Typer app (or sub-app) with Tandem's help layout and error handling."""
    return typer.Typer(help=help_text, cls=TandemGroup, rich_markup_mode=None,
                       context_settings=CONTEXT_SETTINGS, no_args_is_help=True,
                       pretty_exceptions_enable=False, **kwargs)
