"""Fault injection for the reliability tests: named points where a test may kill the process.

Production code calls :func:`fault_point` at the moments a crash matters (after the writer
lock is taken, after rows are inserted, just before a commit, between writing a snapshot
and swapping ``CURRENT``). Without ``TANDEM_FAULT_POINT`` in the environment it does
nothing (one dictionary lookup). With it, the named point acts:

``TANDEM_FAULT_POINT=before_commit``              SIGKILL this process there (``kill -9``)
``TANDEM_FAULT_POINT=before_commit:sleep=2.5``    sleep there (a test kills it from outside)
``TANDEM_FAULT_POINT=before_commit:raise``        raise :class:`FaultInjected`
``TANDEM_FAULT_POINT=a:raise,b``                  several points at once

The points are listed in ``docs/reliability.md``.
"""

from __future__ import annotations

import os
import signal
import sys
import time

FAULT_ENV = "TANDEM_FAULT_POINT"

# The points Tandem's code calls (and the tests use); a new one is documented here too.
POINTS = (
    "after_lock",             # the warehouse writer lock is held, nothing written yet
    "after_insert_response",  # the batch's rows are inserted, transaction still open
    "after_insert_batch",     # the batch record is inserted, transaction still open
    "before_commit",          # everything inserted, COMMIT not yet sent
    "after_commit",           # COMMIT returned, lock not yet released
    "publish_after_snapshot",  # new snapshot file complete, CURRENT not yet swapped
    "publish_after_pointer",   # CURRENT swapped, old snapshots not yet pruned
)


class FaultInjected(RuntimeError):
    """Raised at a fault point configured with ``:raise``."""


def _actions(name: str) -> list[str]:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return []
    out = []
    for item in spec.split(","):
        point, _, action = item.strip().partition(":")
        if point == name:
            out.append(action or "kill")
    return out


def fault_point(name: str) -> None:
    """Act at the point ``name`` if ``TANDEM_FAULT_POINT`` names it; else do nothing."""
    for action in _actions(name):
        if action == "kill":
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(10)  # pragma: no cover - SIGKILL is not catchable
        elif action.startswith("sleep="):
            print(f"FAULT_POINT {name}", file=sys.stderr, flush=True)
            time.sleep(float(action.removeprefix("sleep=")))
        elif action == "raise":
            raise FaultInjected(f"fault injected at {name}")
        else:
            raise ValueError(f"unknown fault action {action!r} in {FAULT_ENV}")
