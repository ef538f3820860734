"""A child process that ingests one file, with fault points wired in (for kill tests).

``python -m tests.reliability.ingest_child FILE...``: imports, warms Great Expectations,
ingests every FILE but the last, prints ``READY``, waits for ``TANDEM_TEST_GO`` (a path)
to exist if set, arms the faults, ingests the last FILE and prints ``RESULT {json}``.
Faults armed for the last file only: ``TANDEM_TEST_FAULT`` becomes ``TANDEM_FAULT_POINT``
(see tandem/faults.py: kill, sleep or raise at the named point); ``TANDEM_TEST_FSIZE``
limits the size of any file the process writes (a full disk: writes fail with EFBIG).

Until flows/ingest.py and tandem/warehouse.py call ``fault_point`` themselves, the points
are wired in here by wrapping the functions the ingest calls at those moments.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path


def wire_fault_points() -> None:
    import flows.ingest as ingest
    from tandem import warehouse
    from tandem.faults import fault_point

    original_writer = warehouse.writer

    @contextmanager
    def writer(settings=None, timeout: float = 3600):
        with original_writer(settings, timeout) as con:
            fault_point("after_lock")
            yield con

    @contextmanager
    def transaction(con):
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            fault_point("before_commit")
            con.execute("COMMIT")
            fault_point("after_commit")

    original_insert_frame = getattr(ingest, "_insert_frame", None)
    original_insert_batch = ingest._insert_batch

    def insert_frame(con, table, frame):
        original_insert_frame(con, table, frame)
        if table == "response":
            fault_point("after_insert_response")

    def insert_batch(*args, **kwargs):
        original_insert_batch(*args, **kwargs)
        fault_point("after_insert_batch")

    warehouse.writer = writer
    warehouse.transaction = transaction
    if original_insert_frame is not None:
        ingest._insert_frame = insert_frame
    ingest._insert_batch = insert_batch


def main(argv: list[str]) -> int:
    from flows.ingest import process_file
    from tandem.contracts import load_clinic_contracts, load_instruments
    from tandem.pseudonym import load_key
    from tandem.settings import get_settings
    from tandem.validation import get_validator
    from tests.reliability.helpers import AS_OF

    wire_fault_points()
    settings = get_settings()
    contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
    key = load_key(settings)
    get_validator()
    *before, last = [Path(a) for a in argv]
    for path in before:
        process_file(path, settings=settings, contracts=contracts, instruments=instruments,
                     key=key, as_of=AS_OF)
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
    result = process_file(last, settings=settings, contracts=contracts,
                          instruments=instruments, key=key, as_of=AS_OF)
    summary = {k: v for k, v in asdict(result).items() if isinstance(v, str | int | None)}
    print("RESULT " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
