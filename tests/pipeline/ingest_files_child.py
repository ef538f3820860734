"""Child process: one ``process_files`` run over the paths given; one JSON line per batch.

Run as ``python -m tests.pipeline.ingest_files_child PATH...`` with TANDEM_HOME and
TANDEM_PSEUDONYM_KEY set. A file that takes the process down shows as its exit status.

The peak is read from ``VmHWM`` of this process and of the reader worker, never from
``getrusage``: Linux carries ``ru_maxrss`` over from the parent across fork and exec, so a
child of a large pytest process would report the parent's size."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def high_water_kb(pid: int | str = "self") -> int:
    """The resident-set high-water mark of one process, in kB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return max((int(line.split()[1]) for line in f if line.startswith("VmHWM")),
                       default=0)
    except OSError:
        return 0


def main(argv: list[str]) -> int:
    from tandem.core.settings import get_settings
    from tandem.pipeline.ingest import IngestRun, process_files
    from tests.reliability.helpers import AS_OF

    run = IngestRun.load(get_settings(), as_of=AS_OF)
    for result in process_files([Path(a) for a in argv], run):
        print("RESULT " + json.dumps(result.summary()), flush=True)
    peak = high_water_kb()
    try:  # the reader worker (a child of the fork server, not of this process)
        from tandem.pipeline.isolation import shared_worker_pid

        peak = max(peak, high_water_kb(shared_worker_pid()))
    except ImportError:
        pass
    print(f"PEAK_KB {peak}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
