"""A child process that ingests one file, with fault points wired in (for kill tests).

``python -m tests.reliability.ingest_child FILE...``: imports, warms Great Expectations,
ingests every FILE but the last, prints ``READY``, waits for ``TANDEM_TEST_GO`` (a path)
to exist if set, arms the faults, ingests the last FILE and prints ``RESULT {json}``.
Faults armed for the last file only: ``TANDEM_TEST_FAULT`` becomes ``TANDEM_FAULT_POINT``
(see tandem/faults.py: kill, sleep or raise at the named point); ``TANDEM_TEST_FSIZE``
limits the size of any file the process writes (a full disk: writes fail with EFBIG).

The fault points are called by flows/ingest.py and tandem/warehouse.py themselves.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path


def main(argv: list[str]) -> int:
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.core.pseudonym import load_key
    from tandem.core.settings import get_settings
    from tandem.pipeline.ingest import IngestRun, process_file
    from tandem.quality.gx_runner import get_validator
    from tests.reliability.helpers import AS_OF

    settings = get_settings()
    contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
    key = load_key(settings)
    get_validator()
    *before, last = [Path(a) for a in argv]
    for path in before:
        process_file(path, IngestRun(
            settings=settings, contracts=contracts, instruments=instruments,
            key=key, as_of=AS_OF))
    print("READY", flush=True)
    go = os.environ.get("TANDEM_TEST_GO")
    while go and not Path(go).exists():
        time.sleep(0.01)
    if os.environ.get("TANDEM_TEST_FAULT"):
        os.environ["TANDEM_FAULT_POINT"] = os.environ["TANDEM_TEST_FAULT"]
    limit = os.environ.get("TANDEM_TEST_FSIZE")
    if limit:  # a full disk: writing past this many bytes fails with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    result = process_file(last, IngestRun(
        settings=settings, contracts=contracts, instruments=instruments,
        key=key, as_of=AS_OF))
    summary = {k: v for k, v in asdict(result).items() if isinstance(v, str | int | None)}
    print("RESULT " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
