"""Child processes that die with the Tandem process that started them, whatever ends it.

A server started as a child (Streamlit, the Prefect server, the endpoint) must not outlive
its parent: left behind it keeps a port and hundreds of MB, owned by init. Two things
make sure of it:

* :func:`die_with_parent` (``preexec_fn``): on Linux the kernel sends the child SIGTERM
  when the parent dies, even of SIGKILL (``prctl(PR_SET_PDEATHSIG)``). The signal follows
  the *thread* that started the child, so start children from the main thread.
* :func:`run_in_foreground`: the parent turns SIGTERM, SIGHUP and Ctrl+C into a clean stop
  of the child (SIGTERM, then SIGKILL after a grace period) before it exits itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None,
                    sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that asks the kernel to send ``sig`` to the child when the process
    that started it dies (Linux; elsewhere the parent's own stop handling remains)."""
    parent = parent_pid or os.getpid()

    def setup() -> None:
        _prctl_pdeathsig(sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)

    return setup


def start(cmd: Sequence[str], *, new_session: bool = False, **popen: object) -> subprocess.Popen:
    """``subprocess.Popen`` of a child that dies with this process."""
    return subprocess.Popen(list(cmd), preexec_fn=die_with_parent(),  # noqa: PLW1509
                            start_new_session=new_session, **popen)  # type: ignore[arg-type]


def stop(proc: subprocess.Popen, grace: float = 10.0, group: bool = False) -> int | None:
    """SIGTERM (to its process group when ``group``), then SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        _send(proc, signal.SIGTERM, group)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    if proc.poll() is None or group:
        _send(proc, signal.SIGKILL, group)  # with group: stragglers of the child too
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    return proc.returncode


def _send(proc: subprocess.Popen, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run_in_foreground(cmd: Sequence[str], env: dict[str, str] | None = None,
                      grace: float = 10.0) -> int:
    """Run ``cmd`` until it exits, or until this process is told to stop (SIGTERM, SIGHUP,
    Ctrl+C): then stop the child too, and return 0 (stopped on purpose). Otherwise the
    child's exit code."""

    def _raise(signum: int, frame: object) -> None:  # noqa: ARG001
        raise _Stop(signum)

    old = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    proc: subprocess.Popen | None = None
    try:
        proc = start(cmd, env=env)
        return proc.wait()
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        if proc is not None:
            stop(proc, grace)
        for s, handler in old.items():
            signal.signal(s, handler)
