"""`tandem demo`: a small multi-clinic data set, through every step, ready to look at.

Re-running it is safe: the data are generated deterministically from the seed, so the
second ingest finds every file already loaded (same content hash) and changes nothing.
Like ``tandem ingest`` and ``tandem aggregate`` it runs the pipeline in this process and
starts no Prefect server; with one configured, the runs are recorded there.
"""

from __future__ import annotations

import datetime as dt

from rich.console import Console

from tandem.core.settings import Settings


def run_demo(console: Console, settings: Settings, seed: int = 7) -> None:
    from tandem.app.aggregate_cli import published_sentence, run_aggregate_command
    from tandem.app.contracts_cli import install_folder
    from tandem.app.dashboard_cli import dashboard_url
    from tandem.app.ingest_cli import expand_paths, run_ingest, summary_sentence
    from tandem.synth import GenerateOptions, generate

    settings.ensure_dirs()
    out = settings.home_dir / "demo-input"
    today = dt.date.today()
    console.rule("[bold]1. generate")
    with console.status("generating a small multi-clinic data set"):
        result = generate(GenerateOptions(out=out, seed=seed, as_of=today))
    console.print(f"Generated {result.administrations:,} administrations in {result.files} "
                  f"files from {result.clinics} clinics into {out} (planted truth: "
                  f"{result.manifest_path.name}).")
    # The generated clinics' contracts become this site's contracts (replacing earlier
    # demo copies of them).
    install_folder(settings, out / "data_contracts", force=True)

    console.rule("[bold]2. ingest")
    files = expand_paths([out / "files"])
    outcome = run_ingest(settings, files, None, trigger="cli", as_of=today.isoformat())
    console.print(summary_sentence(outcome))
    if outcome.failed:
        console.print(f"{len(outcome.failed)} of them failed on purpose (planted faults); "
                      "the quality pages of the dashboard show why.")

    console.rule("[bold]3. aggregate")
    info, _ = run_aggregate_command(settings, today.isoformat())
    console.print(published_sentence(info))

    console.rule("[bold]4. look")
    from dashboards.auth import ensure_demo_users

    users = ensure_demo_users(settings)
    from tandem.core import warehouse

    console.print(f"warehouse:  DuckLake, catalog {warehouse.catalog_spec(settings)}, "
                  f"data {warehouse.data_path(settings)}")
    console.print(f"published:  snapshot {info['snapshot_id']} ({info['version']})")
    url = dashboard_url(settings.dashboard_address, settings.dashboard_port)
    console.print(f"dashboard:  [bold]{url}[/bold]")
    for user, password in users.items():
        console.print(f"  sign in as [bold]{user}[/bold] / {password}")
