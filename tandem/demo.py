"""`tandem demo`: a small multi-clinic data set, through every flow, ready to look at.

Re-running it is safe: the data are generated deterministically from the seed, so the
second ingest finds every file already loaded (same content hash) and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter

from rich.console import Console

from tandem.settings import get_settings


def run_demo(console: Console, seed: int = 7) -> None:
    from tandem.cli import expand_paths, run_ingest
    from tandem.synth import GenerateOptions, generate

    settings = get_settings()
    settings.ensure_dirs()
    out = settings.home_dir / "demo-input"
    today = dt.date.today()
    console.rule("[bold]1. generate")
    with console.status("generating a small multi-clinic data set"):
        result = generate(GenerateOptions(out=out, seed=seed, as_of=today))
    console.print(f"generated into {out} (ground truth: {out / 'manifest.json'}) — {result}")

    # The generated clinics' contracts become this site's contracts.
    target = settings.local_contracts_dir / "clinics"
    target.mkdir(parents=True, exist_ok=True)
    for contract in sorted((out / "data_contracts" / "clinics").glob("*.yaml")):
        shutil.copyfile(contract, target / contract.name)

    console.rule("[bold]2. ingest (Prefect flow `ingest`)")
    files = expand_paths([out / "files"])
    results = run_ingest(files, None, trigger="cli", as_of=today.isoformat())
    statuses = Counter(r["status"] for r in results)
    console.print(
        f"{len(results)} files: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        + f"; rows loaded {sum(r['rows_loaded'] for r in results):,}, quarantined "
        f"{sum(r['rows_quarantined'] for r in results):,}, duplicates skipped "
        f"{sum(r['rows_duplicate'] for r in results):,}"
    )

    console.rule("[bold]3. aggregate (Prefect flow `aggregate`)")
    from flows.aggregate import aggregate

    with console.status("building and publishing marts"):
        info = aggregate(today.isoformat())
    console.print(f"published snapshot {info['version']} ({len(info['tables'])} tables)")

    console.rule("[bold]4. look")
    try:
        from dashboards.users import ensure_demo_users
    except ImportError:
        users = {}
    else:
        users = ensure_demo_users(settings)
    console.print(f"warehouse:  {settings.warehouse_path}")
    console.print(f"published:  {info['path']}")
    console.print(f"dashboard:  [bold]http://localhost:{settings.dashboard_port}[/bold]")
    for user, password in users.items():
        console.print(f"  sign in as [bold]{user}[/bold] / {password}")
