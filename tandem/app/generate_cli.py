"""``tandem generate``: synthetic clinic exports with a known truth (docs/generator.md).

Registered by ``tandem/app/cli.py`` as ``app.command("generate")(generate_command)``.
Exit codes: 0 done; 1 an unexpected error; 2 a usage error (bad option values, or an
output folder that holds something other than a generated data set).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tandem.app.clikit import Failure, join_words, parse_date, plural, say, warn

if TYPE_CHECKING:
    from tandem.synth.options import FaultRates

def _fault_rates(clean: bool, fault_scale: float, overrides: list[str]) -> FaultRates:
    from tandem.synth.options import FaultRates

    rates = FaultRates.clean() if clean else FaultRates().scaled(fault_scale)
    known = {*FaultRates.ROW_KINDS, *FaultRates.FILE_KINDS, "bom"}
    changes: dict[str, float] = {}
    for item in overrides:
        kind, sep, value = item.partition("=")
        kind = kind.strip().replace("-", "_")
        if not sep or kind not in known:
            raise typer.BadParameter(
                f"{item!r} is not KIND=RATE with a known KIND. The kinds are "
                f"{join_words(sorted(known))}.", param_hint="--fault-rate")
        try:
            rate = float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: the rate must be a number.",
                                     param_hint="--fault-rate") from None
        if not 0 <= rate <= 0.2:
            raise typer.BadParameter(f"{item!r}: the rate must be between 0 and 0.2.",
                                     param_hint="--fault-rate")
        changes[kind] = rate
    rates = dataclasses.replace(rates, **changes)
    if rates.row_total() > 0.5:
        raise typer.BadParameter("the row fault rates add up to more than 0.5.",
                                 param_hint="--fault-rate")
    return rates


def _check_out(out: Path, force: bool) -> None:
    """Refuse to overwrite a folder that is not a generated data set."""
    if not out.exists() or force:
        return
    if not out.is_dir():
        raise typer.BadParameter(f"{out} is a file, not a folder.", param_hint="--out")
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    ours = {"files", "data_contracts", "manifest.json", "truth_episodes.parquet"}
    if entries and not (out / "manifest.json").exists() or any(
            p.name not in ours for p in entries):
        raise typer.BadParameter(
            f"{out} holds files that are not a generated data set; choose an empty folder, "
            "or pass --force to write into it anyway.", param_hint="--out")


def generate_command(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder. Default: $TANDEM_HOME/synthetic.",
        metavar="FOLDER")] = None,
    seed: Annotated[int, typer.Option(
        help="Random seed: the same seed gives the same bytes.", metavar="N")] = 42,
    clinics: Annotated[int | None, typer.Option(
        min=1, help="Number of clinics. Default: 8 x sqrt(scale).", metavar="N")] = None,
    clients_per_clinic: Annotated[int | None, typer.Option(
        min=1, help="Clients per clinic (Excel practices get a quarter). Default: 60 x "
                    "sqrt(scale).", metavar="N")] = None,
    scale: Annotated[float, typer.Option(
        min=0.01, help="One size factor: about scale x 11,000 administrations (960 makes "
                       "about 10 million).", metavar="X")] = 1.0,
    period: Annotated[str, typer.Option(
        help="How each clinic's exports are split: day, week or month (Excel practices: "
             "always a quarter).", metavar="PERIOD")] = "month",
    as_of: Annotated[str, typer.Option(
        help="The data set's today: every true date falls before it.", metavar="DATE",
        callback=parse_date)] = "2026-06-30",
    alliance_r: Annotated[float, typer.Option(
        help="Planted correlation of early alliance (SRS) with ORS change.",
        metavar="R")] = 0.28,
    practice_effect: Annotated[float, typer.Option(
        help="Planted ORS points per unit of practice exposure (0 to 1).",
        metavar="POINTS")] = 4.0,
    therapist_share: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="Share of the outcome-change variance between therapists "
                               "(0 to 0.5).", metavar="SHARE")] = 0.05,
    alliance_r_phq9: Annotated[float, typer.Option(
        help="Planted correlation of WAI-SR at session 3 with PHQ-9 change.",
        metavar="R")] = -0.28,
    practice_effect_phq9: Annotated[float, typer.Option(
        help="Planted PHQ-9 points per unit of practice exposure (negative is better).",
        metavar="POINTS")] = -3.0,
    no_effect: Annotated[bool, typer.Option(
        "--no-effect", help="Alliance and practices have no effect at all.")] = False,
    clean: Annotated[bool, typer.Option("--clean", help="No faults of any kind.")] = False,
    fault_scale: Annotated[float, typer.Option(
        min=0.0, help="Multiply every default fault rate by this.", metavar="X")] = 1.0,
    fault_rate: Annotated[list[str] | None, typer.Option(
        help="Set one fault rate, e.g. out_of_range=0.01 (repeat for more).",
        metavar="KIND=RATE")] = None,
    workers: Annotated[int, typer.Option(
        min=0, help="Worker processes; 0: every CPU for large sets, one for small ones. "
                    "The output does not depend on it.", metavar="N")] = 0,
    install_contracts: Annotated[bool | None, typer.Option(
        "--install-contracts/--no-install-contracts",
        help="Install the clinic contracts into $TANDEM_HOME/data_contracts, where the "
             "next ingest finds them. Default: yes without --out; with --out the command "
             "that installs them is printed.", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into --out even if it holds other files.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar and no summary: only the manifest's path "
                              "(on stdout).")] = False,
) -> None:
    """Generate synthetic clinic exports with a known truth.

    Writes files/<clinic>/ (the exports), data_contracts/clinics/ (one contract per
    clinic), manifest.json and truth_episodes.parquet (the planted truth; see
    docs/generator.md), and prints the manifest's path on stdout.
    """
    if period not in ("day", "week", "month"):
        raise typer.BadParameter(f"{period!r} is not a period; use day, week or month.",
                                 param_hint="--period")
    as_of_date = dt.date.fromisoformat(as_of)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from tandem.core.settings import get_settings
    from tandem.synth.generate import generate
    from tandem.synth.options import EffectSizes, GenerateOptions

    _console = Console(stderr=True)
    settings = get_settings()
    default_out = out is None
    target = (settings.home_dir / "synthetic") if out is None else out
    _check_out(target, force)
    effects = EffectSizes(
        alliance_outcome_r=alliance_r, practice_effect_ors=practice_effect,
        therapist_variance_share=therapist_share, alliance_outcome_r_phq9=alliance_r_phq9,
        practice_effect_phq9=practice_effect_phq9,
    )
    if no_effect:
        effects = effects.without_effects()
    try:
        options = GenerateOptions(
            out=target, seed=seed, clinics=clinics, clients_per_clinic=clients_per_clinic,
            scale=scale, period=period,  # type: ignore[arg-type]
            as_of=as_of_date, effects=effects,
            faults=_fault_rates(clean, fault_scale, fault_rate or []),
            workers=workers or 1,
        )
    except ValueError as exc:  # effect sizes the model cannot carry, and the like
        raise typer.BadParameter(str(exc).rstrip(".") + ".") from None
    if not workers:  # small sets are faster without starting worker processes
        big = options.n_clinics * options.n_clients_per_clinic >= 20_000
        options = dataclasses.replace(options, workers=(os.cpu_count() or 1) if big else 1)
    start = time.perf_counter()
    try:
        if quiet:
            result = generate(options)
        else:
            with Progress(TextColumn("[bold]generating[/] {task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=_console,
                          transient=True) as bar:
                task = bar.add_task("clinics", total=options.n_clinics)

                def tick(clinic: str, done: int, total: int) -> None:
                    bar.update(task, completed=done, description=clinic)

                result = generate(options, progress=tick)
    except ValueError as exc:  # effects the model cannot carry, and the like
        raise typer.BadParameter(str(exc).rstrip(".") + ".") from None
    if not quiet:
        say(f"Generated {result.administrations:,} administrations in "
            f"{plural(result.files, 'file')} from {plural(result.clinics, 'clinic')} "
            f"({plural(result.faults, 'planted fault')}) in "
            f"{time.perf_counter() - start:.1f} s, into {target}.")
    contracts = target / "data_contracts"
    if install_contracts if install_contracts is not None else default_out:
        from tandem.app.contracts_cli import install_folder

        try:
            install_folder(settings, contracts)
            if not quiet:
                say(f"Its clinic contracts are installed in {settings.local_contracts_dir}; "
                    f"ingest with: tandem ingest {target / 'files'}")
        except Failure as exc:
            warn(f"its clinic contracts were not installed: {exc.format_message()}")
    elif not quiet:
        say("Its clinic contracts are not installed yet. Install them with:")
        typer.echo(f"  tandem contracts install {contracts}", err=True)  # whole, to copy
    typer.echo(str(result.manifest_path))
