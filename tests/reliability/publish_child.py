"""A child process that publishes marts, with faults armed (for publish kill tests).

``python -m tests.reliability.publish_child ROWS``: publishes a first small snapshot if
``TANDEM_TEST_FIRST`` is set, prints ``READY``, arms ``TANDEM_TEST_FAULT`` (becomes
``TANDEM_FAULT_POINT``) and ``TANDEM_TEST_FSIZE`` (file-size limit: a full disk), then
publishes marts of ROWS rows and prints ``RESULT <version>``.
"""

from __future__ import annotations

import os
import resource
import signal
import sys

import polars as pl


def marts(rows: int) -> dict[str, pl.DataFrame]:
    base = pl.DataFrame({"clinic_id": ["northside"] * rows, "n": list(range(rows))})
    return {
        "mart_outcomes": base.with_columns(score=pl.col("n") * 0.5),
        "mart_alliance": base.with_columns(label=pl.format("row-{}", pl.col("n"))),
        "audit_batch": base.head(max(rows // 10, 1)),
    }


def main(argv: list[str]) -> int:
    from tandem.core import published

    if os.environ.get("TANDEM_TEST_FIRST"):
        published.publish(marts(100), meta={"as_of": "first"})
    print("READY", flush=True)
    if os.environ.get("TANDEM_TEST_FAULT"):
        os.environ["TANDEM_FAULT_POINT"] = os.environ["TANDEM_TEST_FAULT"]
    limit = os.environ.get("TANDEM_TEST_FSIZE")
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))
    snap = published.publish(marts(int(argv[0])), meta={"as_of": "second"})
    print(f"RESULT {snap.version}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
