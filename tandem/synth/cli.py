"""``tandem generate``: synthetic clinic exports with a known truth (docs/generator.md).

Registered by ``tandem/cli.py`` as ``app.command("generate")(generate_command)``.
Exit codes: 0 done; 1 an unexpected error; 2 a usage error (bad option values, or an
output folder that holds something other than a generated data set).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tandem.settings import get_settings
from tandem.synth.generate import generate
from tandem.synth.options import EffectSizes, FaultRates, GenerateOptions

EXIT_USAGE = 2
_console = Console(stderr=True)


def _fault_rates(clean: bool, fault_scale: float, overrides: list[str]) -> FaultRates:
    rates = FaultRates.clean() if clean else FaultRates().scaled(fault_scale)
    known = {*FaultRates.ROW_KINDS, *FaultRates.FILE_KINDS, "bom"}
    changes: dict[str, float] = {}
    for item in overrides:
        kind, sep, value = item.partition("=")
        kind = kind.strip().replace("-", "_")
        if not sep or kind not in known:
            raise typer.BadParameter(
                f"{item!r}: expected KIND=RATE, KIND one of {', '.join(sorted(known))}",
                param_hint="--fault-rate")
        try:
            rate = float(value)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: RATE must be a number",
                                     param_hint="--fault-rate") from None
        if not 0 <= rate <= 0.2:
            raise typer.BadParameter(f"{item!r}: RATE must be within 0..0.2",
                                     param_hint="--fault-rate")
        changes[kind] = rate
    rates = dataclasses.replace(rates, **changes)
    if rates.row_total() > 0.5:
        raise typer.BadParameter("row fault rates add up to more than 0.5",
                                 param_hint="--fault-rate")
    return rates


def _check_out(out: Path, force: bool) -> None:
    """Refuse to overwrite a folder that is not a generated data set."""
    if not out.exists() or force:
        return
    if not out.is_dir():
        raise typer.BadParameter(f"{out} is not a folder", param_hint="--out")
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    ours = {"files", "data_contracts", "manifest.json", "truth_episodes.parquet"}
    if entries and not (out / "manifest.json").exists() or any(
            p.name not in ours for p in entries):
        raise typer.BadParameter(
            f"{out} holds other files; choose an empty folder or pass --force",
            param_hint="--out")


def generate_command(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output folder (default: $TANDEM_HOME/synthetic).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 42,
    clinics: Annotated[int | None, typer.Option(
        min=1, help="Number of clinics (default: 8 x sqrt(scale)).")] = None,
    clients_per_clinic: Annotated[int | None, typer.Option(
        min=1, help="Clients per clinic (Excel practices get a quarter) "
                    "(default: 60 x sqrt(scale)).")] = None,
    scale: Annotated[float, typer.Option(
        min=0.01, help="One size factor: about scale x 11,000 administrations. "
                       "--scale 960 makes about 10 million.")] = 1.0,
    period: Annotated[str, typer.Option(
        help="How files are split: day, week or month (Excel: always a quarter).")] = "month",
    as_of: Annotated[str, typer.Option(
        help="The data set's 'today' (YYYY-MM-DD): every true date falls before it.")]
        = "2026-06-30",
    alliance_r: Annotated[float, typer.Option(
        help="Planted correlation of early alliance (SRS) with ORS change.")] = 0.28,
    practice_effect: Annotated[float, typer.Option(
        help="Planted ORS points per unit of practice exposure (0 to 1).")] = 4.0,
    therapist_share: Annotated[float, typer.Option(
        min=0.0, max=0.5, help="Share of outcome-change variance between therapists.")] = 0.05,
    alliance_r_phq9: Annotated[float, typer.Option(
        help="Planted correlation of WAI-SR at session 3 with PHQ-9 change.")] = -0.28,
    practice_effect_phq9: Annotated[float, typer.Option(
        help="Planted PHQ-9 points per unit of practice exposure (negative = better).")]
        = -3.0,
    no_effect: Annotated[bool, typer.Option(
        "--no-effect", help="Alliance and practices have no effect at all.")] = False,
    clean: Annotated[bool, typer.Option("--clean", help="No faults of any kind.")] = False,
    fault_scale: Annotated[float, typer.Option(
        min=0.0, help="Multiply every default fault rate by this.")] = 1.0,
    fault_rate: Annotated[list[str] | None, typer.Option(
        help="Set one fault rate, KIND=RATE (repeatable), e.g. out_of_range=0.01.")] = None,
    workers: Annotated[int, typer.Option(
        min=0, help="Processes; 0: all CPUs for large sets, else 1. The output does not "
                    "depend on it.")] = 0,
    install_contracts: Annotated[bool, typer.Option(
        help="Also copy the clinic contracts to $TANDEM_HOME/data_contracts/clinics "
             "(only with the default --out).")] = True,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into --out even if it holds other files.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Generate synthetic clinic exports, their contracts and a ground-truth manifest."""
    if period not in ("day", "week", "month"):
        raise typer.BadParameter("must be day, week or month", param_hint="--period")
    try:
        as_of_date = dt.date.fromisoformat(as_of)
    except ValueError:
        raise typer.BadParameter("expected YYYY-MM-DD", param_hint="--as-of") from None
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
    options = GenerateOptions(
        out=target, seed=seed, clinics=clinics, clients_per_clinic=clients_per_clinic,
        scale=scale, period=period,  # type: ignore[arg-type]
        as_of=as_of_date, effects=effects,
        faults=_fault_rates(clean, fault_scale, fault_rate or []),
        workers=workers or 1,
    )
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
        _console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if default_out and install_contracts:
        dest = settings.local_contracts_dir / "clinics"
        dest.mkdir(parents=True, exist_ok=True)
        for p in sorted((target / "data_contracts" / "clinics").glob("*.yaml")):
            shutil.copyfile(p, dest / p.name)
    if not quiet:
        _console.print(
            f"{result.administrations:,} administrations in {result.files:,} files from "
            f"{result.clinics} clinics, {result.faults:,} faults, "
            f"{time.perf_counter() - start:.1f} s -> {target}")
    typer.echo(str(result.manifest_path))
