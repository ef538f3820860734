"""Run one step as a child process and measure it from the outside.

Time is the wall clock from ``Popen`` to the child's exit (``time.perf_counter``), so it
includes interpreter start-up, imports and anything the step starts (a temporary Prefect
server, worker processes). Memory comes from the operating system, two ways:

- ``peak_rss_mib``: ``ru_maxrss`` of the rusage that ``os.wait4`` returns for the child.
  Linux reports the *largest single process* among the child and the descendants it
  waited for, not their sum. This is the number targets are judged on.
- ``peak_tree_mib``: the summed resident set of the child's whole process tree, sampled
  from ``/proc`` every 50 ms (a short peak between samples can be missed). It shows what
  helpers such as a temporary Prefect server add.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SAMPLE_SECONDS = 0.05


class StepFailed(RuntimeError):
    """A step exited non-zero or timed out; carries the tail of its output."""


@dataclass
class Measurement:
    """One run of one step."""

    seconds: float
    peak_rss_mib: float
    peak_tree_mib: float
    returncode: int
    stdout: str = field(repr=False, default="")
    stderr_tail: str = field(repr=False, default="")


@dataclass
class StepResult:
    """Every repeat of one step (a baseline or Tandem's), summarised by its median."""

    scenario: str
    size: str
    step: str
    role: str  # "baseline" | "tandem" | "info"
    status: str = "ok"  # ok | failed | skipped
    runs_s: list[float] = field(default_factory=list)
    median_s: float | None = None
    peak_rss_mib: float | None = None
    peak_tree_mib: float | None = None
    error: str | None = None
    note: str | None = None
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def tree_rss_kib(pid: int) -> int:
    """The summed resident set (KiB) of a process and all its descendants, right now."""
    return sum(_rss_kib(p) for p in _tree(pid))


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_step(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    log: Path | None = None,
) -> Measurement:
    """Run ``cmd`` to completion; raise StepFailed on a non-zero exit or a timeout.

    stdout is captured (steps print a small JSON summary there); stderr goes to ``log``
    (or a temporary file) so a chatty child can never block on a full pipe.
    """
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONPATH", str(REPO_ROOT))
    log = log or Path(os.devnull)
    err_fh = open(log, "ab")  # noqa: SIM115 - closed below
    # A file, not a pipe: a helper the step leaves running must not hold our read open.
    out_fh = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), env=full_env, cwd=cwd or REPO_ROOT, stdout=out_fh, stderr=err_fh,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    peak_tree = 0
    done = threading.Event()
    timed_out = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.is_set():
            peak_tree = max(peak_tree, tree_rss_kib(proc.pid))
            if timeout is not None and time.perf_counter() - start > timeout:
                timed_out.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    # Leftovers of the step (a server it forgot to stop) must not outlive it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    err_fh.close()
    out_fh.seek(0)
    stdout = out_fh.read().decode("utf-8", errors="replace")
    out_fh.close()
    m = Measurement(
        seconds=seconds,
        peak_rss_mib=usage.ru_maxrss / 1024,  # KiB on Linux
        peak_tree_mib=peak_tree / 1024,
        returncode=proc.returncode,
        stdout=stdout,
        stderr_tail=_tail(log),
    )
    if timed_out.is_set():
        raise StepFailed(f"timed out after {timeout:.0f} s: {' '.join(cmd)[:200]}")
    if m.returncode != 0:
        cause = _root_cause(log) or _root_cause_text(stdout)
        raise StepFailed(
            f"exit code {m.returncode}: {' '.join(cmd)[:200]}\n"
            + (f"{cause}\n" if cause else "") + (m.stderr_tail or stdout[-2000:])
        )
    return m


_EXC = re.compile(r"^[\w.]*(Error|Exception): .+$", re.MULTILINE)


def _root_cause_text(text: str) -> str | None:
    """The first ``SomeError: message`` line: the root cause of a chain of tracebacks."""
    found = _EXC.search(text)
    return found.group(0)[:300] if found else None


def _root_cause(path: Path) -> str | None:
    if path == Path(os.devnull) or not path.exists():
        return None
    with path.open("rb") as fh:
        return _root_cause_text(fh.read(8 << 20).decode("utf-8", errors="replace"))


def _tail(path: Path, chars: int = 2000) -> str:
    if path == Path(os.devnull) or not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - chars))
        return fh.read().decode("utf-8", errors="replace")


def measure(
    scenario: str,
    size: str,
    step: str,
    role: str,
    make_cmd: Callable[[int], Sequence[str]],
    *,
    repeat: int,
    setup: Callable[[int], Mapping[str, str] | None] | None = None,
    timeout: float | None = None,
    logdir: Path | None = None,
    note: str | None = None,
) -> StepResult:
    """Run a step ``repeat`` times (``setup(i)`` before each, untimed, returns extra env)."""
    res = StepResult(scenario, size, step, role, note=note)
    rss, tree = [], []
    try:
        for i in range(repeat):
            env = setup(i) if setup else None
            log = (logdir / f"{scenario}-{step}-{i}.log") if logdir else None
            m = run_step(make_cmd(i), env=env, timeout=timeout, log=log)
            res.runs_s.append(round(m.seconds, 3))
            rss.append(m.peak_rss_mib)
            tree.append(m.peak_tree_mib)
            last = _last_json(m.stdout)
            if last is not None:
                res.details.setdefault("outputs", []).append(last)
    except Exception as exc:  # a failing step is reported, never fatal to the run
        res.status, res.error = "failed", f"{type(exc).__name__}: {exc}"[:3000]
    if res.runs_s:
        res.median_s = round(statistics.median(res.runs_s), 3)
        res.peak_rss_mib = round(max(rss), 1)
        res.peak_tree_mib = round(max(tree), 1)
    return res


def _last_json(stdout: str) -> object:
    """The last line of stdout that parses as JSON (steps print their summary last)."""
    import json

    text = stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None
