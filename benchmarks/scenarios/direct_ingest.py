"""Tandem's ingest work without Prefect: ``tandem.pipeline.ingest.process_files`` (chunked
validation).

    python -m benchmarks.scenarios.direct_ingest AS_OF PATH [PATH...]

Uses the environment's TANDEM_HOME. Separates the per-file work from the fixed cost of
the command (Typer, the Prefect flow and task runs, a temporary Prefect server).
Prints {"files": N, "rows_loaded": M, "statuses": {...}}.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter
from pathlib import Path


def main(argv: list[str]) -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.core.pseudonym import load_key
    from tandem.core.settings import get_settings
    from tandem.pipeline.ingest import IngestRun, process_files

    as_of = dt.date.fromisoformat(argv[0])
    settings = get_settings()
    settings.ensure_dirs()
    contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
    key = load_key(settings)
    statuses: Counter[str] = Counter()
    loaded = 0
    for r in process_files([Path(p) for p in argv[1:]], IngestRun(
        settings=settings, contracts=contracts, instruments=instruments,
        key=key, trigger="bench", as_of=as_of)):
        statuses[r.status] += 1
        loaded += r.rows_loaded
    print(json.dumps({"files": len(argv) - 1, "rows_loaded": loaded,
                      "statuses": dict(statuses)}))
    if statuses.get("failed"):
        sys.exit(3)


if __name__ == "__main__":
    main(sys.argv[1:])
