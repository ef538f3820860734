"""Fault injection for the reliability tests: named points where a test may kill the process.

Production code calls :func:`fault_point` at the moments a crash matters (a writer just
connected, rows inserted in an open transaction, just before and after a load's or a
publish's commit). Without ``TANDEM_FAULT_POINT`` in the environment it does
nothing (one dictionary lookup). With it, the named point acts:

``TANDEM_FAULT_POINT=before_commit``              SIGKILL this process there (``kill -9``)
``TANDEM_FAULT_POINT=before_commit:sleep=2.5``    sleep there (a test kills it from outside)
``TANDEM_FAULT_POINT=before_commit:raise``        raise :class:`FaultInjected`
``TANDEM_FAULT_POINT=a:raise,b``                  several points at once
``TANDEM_FAULT_POINT=a:pidfile=F,a:sleep=9``      append this pid to F there, then sleep

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
    "after_lock",             # a warehouse writer is connected, nothing written yet
    "after_insert_response",  # a chunk's rows are inserted, its transaction still open
    "after_insert_batch",     # its batch records are inserted, the transaction still open
    "before_commit",          # the chunk's load: everything inserted, COMMIT not yet sent
    "after_commit",           # COMMIT returned (the chunk is loaded), reports not yet written
    "publish_after_marts",     # a publish: every mart written, its transaction still open
    "publish_before_commit",   # a publish: everything written, COMMIT not yet sent
    "publish_after_commit",    # a publish committed (readers see it), nothing else done
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
        elif action.startswith("pidfile="):  # say who is there (a test then kills it)
            with open(action.removeprefix("pidfile="), "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {name}\n")
        else:
            raise ValueError(f"unknown fault action {action!r} in {FAULT_ENV}")
