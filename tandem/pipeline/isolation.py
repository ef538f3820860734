"""Run a file reader in a child process, so that what a file does to its reader stays there.

The readers hand a clinic's bytes to native parsers (fastexcel/calamine for Excel, Polars'
CSV reader). A crafted or broken file can make them abort the process (Rust's failed
allocation: ``memory allocation of 549755813888 bytes failed``, SIGABRT), panic past
``except Exception`` (pyo3's ``PanicException`` is a ``BaseException``), or take gigabytes.
Run in the ingest process, that ends the whole run with no batch record. So each ingest
process keeps one worker process (:func:`shared_reader`), started on first use and
stopped when the process ends, and sends it one read at a time:

* an exception in the reader comes back as :class:`ReaderFailed` (``kind="exception"``)
  naming its type only; its text is withheld (it may quote the file) unless the type is
  one of ``safe_exceptions`` (messages written to be shown, like ``SourceError``);
* a crash (SIGABRT, SIGSEGV, SIGKILL from the OOM killer) comes back as ``ReaderFailed``
  (``kind="crashed"`` or ``"memory"``) and the next read gets a fresh worker;
* the worker's address space is capped (``RLIMIT_AS``), so a bomb fails in the child;
* a read that runs past ``timeout`` has its worker killed (``kind="timeout"``);
* the worker dies with its parent (``PR_SET_PDEATHSIG`` plus a thread that polls the
  parent's pid: the death signal follows the *thread* that forked, and under forkserver
  the OS parent is the fork server), and is always reaped;
* core dumps are off in the worker (``RLIMIT_CORE=0``, not dumpable): a reader's memory
  holds patient data;
* nothing the worker sends is unpickled: replies are JSON, and a frame comes back as Arrow
  IPC written into a sealed ``memfd`` (no one can shrink or rewrite it afterwards, so the
  parent's memory map can never SIGBUS) whose descriptor is passed over the socket. The
  parent maps it, validates it in full (offsets, UTF-8: Polars treats invalid Arrow as
  undefined behaviour) and wraps it with ``pl.from_arrow`` without copying its buffers.

Workers start from a fork server (``forkserver``), never plain ``fork``: Polars and
jemalloc run threads.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any

_SEALS = (getattr(fcntl, "F_SEAL_SEAL", 1) | getattr(fcntl, "F_SEAL_SHRINK", 2)
          | getattr(fcntl, "F_SEAL_GROW", 4) | getattr(fcntl, "F_SEAL_WRITE", 8))
_HAS_MEMFD = hasattr(os, "memfd_create") and hasattr(fcntl, "F_ADD_SEALS")
_MAX_REPLY = 4 << 20
_ALLOC_FAILED = re.compile(rb"memory allocation of (\d+) bytes failed")
# What the fork server imports before it forks a worker (instead of the parent's
# __main__, which may be a console script or a test runner).
_PRELOAD = ["tandem.pipeline.isolation"]


class ReaderFailed(Exception):
    """The reader did not return a result. ``str()`` names no file contents."""

    def __init__(self, kind: str, message: str, *, exc_type: str | None = None,
                 signal_name: str | None = None, requested_bytes: int | None = None):
        super().__init__(message)
        self.kind = kind  # exception | crashed | memory | timeout | protocol
        self.exc_type = exc_type
        self.signal_name = signal_name
        self.requested_bytes = requested_bytes


@dataclass(frozen=True)
class WorkerConfig:
    memory_limit: int | None = 4 << 30      # RLIMIT_AS of the worker, bytes (None: no cap)
    safe_exceptions: tuple[type[BaseException], ...] = ()
    validate: bool = True                   # full Arrow validation of a returned frame
    env: dict[str, str] = field(default_factory=dict)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------- worker side


def _die_with_parent(parent_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        libc.prctl(4, 0, 0, 0, 0)               # PR_SET_DUMPABLE 0: no core, no ptrace
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # the death signal can miss (thread exit, forkserver chain)
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(70)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    try:
        os.kill(parent_pid, 0)  # the parent may have died before the prctl
    except ProcessLookupError:
        os._exit(70)


def _worker_main(conn, parent_pid: int, cfg: WorkerConfig, stderr_path: str) -> None:
    _die_with_parent(parent_pid)
    err = os.open(stderr_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    os.dup2(err, 2)
    os.close(err)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cfg.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (cfg.memory_limit, cfg.memory_limit))
    os.environ.update(cfg.env)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args, kwargs, result_dir = task
        os.ftruncate(2, 0)  # the crash classifier reads this task's stderr only
        try:
            result = fn(*args, **kwargs)
            _reply(conn, result, result_dir)
        except MemoryError:
            _send_json(conn, {"ok": False, "kind": "memory", "type": "MemoryError"})
            return  # a heap that hit its cap is not reused
        except BaseException as exc:  # noqa: BLE001 - PanicException is a BaseException
            safe = isinstance(exc, cfg.safe_exceptions) if cfg.safe_exceptions else False
            _send_json(conn, {"ok": False, "kind": "exception",
                              "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                              "message": str(exc)[:4000] if safe else None})
        finally:
            result = None  # noqa: F841 - the frame's memory goes before the next task


def _send_json(conn, obj: dict) -> None:
    conn.send_bytes(json.dumps(obj).encode())


def _write_arrow(frame, path: str) -> None:
    """The frame as Arrow IPC at ``path``, through pyarrow's writer (Polars' ``write_ipc``
    is slower on string columns). Strings go as plain Arrow strings, with 32-bit offsets
    where a column's text fits (a third fewer bytes than 64-bit ones): the parent
    validates those in a fraction of the time string views take."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.ipc

    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    columns = []
    for column in table.columns:
        if pa.types.is_large_string(column.type):
            # over 2 GiB of text in the column: keep 64-bit offsets
            with contextlib.suppress(pa.ArrowInvalid, OverflowError):
                column = column.cast(pa.string())
        columns.append(column)
    table = pa.table(columns, names=table.column_names)
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _reply(conn, result: Any, result_dir: str) -> None:
    import polars as pl

    frame, extra = None, None
    if isinstance(result, pl.DataFrame):
        frame = result
    elif (isinstance(result, tuple) and len(result) == 2
          and isinstance(result[0], pl.DataFrame)):
        frame, extra = result
    if frame is None:
        _send_json(conn, {"ok": True, "value": result})  # must be JSON-able
        return
    if _HAS_MEMFD:
        fd = os.memfd_create("tandem-result", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            _write_arrow(frame, f"/proc/self/fd/{fd}")
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            _send_json(conn, {"ok": True, "frame": "memfd", "rows": frame.height,
                              "extra": extra})
            send_handle(conn, fd, os.getppid())
        finally:
            os.close(fd)
    else:  # no memfd (not Linux): Arrow IPC in the parent's private temp folder
        fd, path = tempfile.mkstemp(suffix=".arrow", dir=result_dir)
        os.close(fd)
        _write_arrow(frame, path)
        _send_json(conn, {"ok": True, "frame": path, "rows": frame.height, "extra": extra})


# ----------------------------------------------------------------------------- parent side


class IsolatedReader:
    """One persistent worker process; ``run(fn, *args)`` calls ``fn`` in it.

    ``fn`` and its arguments are pickled *to* the worker (functions by reference: they
    must be importable). A worker serves ``max_tasks`` calls, then a fresh one starts
    (heap growth, leaked state). Not thread-safe: :func:`shared_reader` wraps one in a
    lock."""

    def __init__(self, config: WorkerConfig | None = None, *, timeout: float | None = 600,
                 max_tasks: int = 500, context: str = "forkserver"):
        if context == "fork":
            raise ValueError("fork is unsafe with Polars/jemalloc threads: use forkserver or "
                             "spawn")
        self.config = config or WorkerConfig()
        self.timeout, self.max_tasks = timeout, max_tasks
        self.ctx = mp.get_context(context)
        if context == "forkserver":
            self.ctx.set_forkserver_preload(_PRELOAD)
        self._dir = tempfile.mkdtemp(prefix="tandem-reader-")  # 0700
        self._stderr = os.path.join(self._dir, "worker.stderr")
        self._proc = None
        self._conn = None
        self._served = 0
        self.started = 0  # workers started (for tests and benchmarks)

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (reaped: no zombie) and remove the private folder."""
        self._stop(graceful=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _start(self) -> None:
        os.makedirs(self._dir, mode=0o700, exist_ok=True)
        open(self._stderr, "wb").close()
        here, there = self.ctx.Pipe(duplex=True)  # a socketpair: carries descriptors too
        proc = self.ctx.Process(target=_worker_main, name="tandem-reader", daemon=True,
                                args=(there, os.getpid(), self.config, self._stderr))
        with _without_main():
            proc.start()
        there.close()
        self._proc, self._conn, self._served = proc, here, 0
        self.started += 1

    def _stop(self, graceful: bool) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if proc is None:
            return
        if graceful and proc.is_alive():
            with contextlib.suppress(OSError, ValueError):
                conn.send(None)
            proc.join(2)
        if proc.is_alive():
            proc.kill()
        proc.join()  # reaped: no zombie
        conn.close()
        proc.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def run(self, fn: Callable, *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` in the worker: its JSON-able value, or a Polars frame
        (or ``(frame, extra)``) mapped from the worker's memfd; :class:`ReaderFailed` when
        it raises, crashes, runs out of memory or time."""
        if self._proc is None or not self._proc.is_alive():
            self._stop(graceful=False)
            self._start()
        conn, proc = self._conn, self._proc
        try:
            conn.send((fn, args, kwargs, self._dir))
        except (OSError, ValueError) as exc:
            self._stop(graceful=False)
            raise ReaderFailed("crashed", "the reader process could not be reached") from exc
        self._served += 1
        if not conn.poll(self.timeout):
            self._stop(graceful=False)
            raise ReaderFailed(
                "timeout", f"the reader took longer than {self.timeout:g} s and was stopped; "
                           f"the file may be far larger than usual or crafted to stall it")
        try:
            raw = conn.recv_bytes(_MAX_REPLY)
        except (EOFError, OSError):
            raise self._crashed(proc) from None
        try:
            reply = json.loads(raw)
        except ValueError:
            self._stop(graceful=False)
            raise ReaderFailed("protocol", "the reader process sent an unreadable reply") \
                from None
        if not reply.get("ok"):
            if reply.get("kind") == "memory":
                self._stop(graceful=False)
                raise ReaderFailed("memory", self._memory_text(None), exc_type="MemoryError")
            self._recycle()
            name = str(reply.get("type", "Exception"))
            msg = reply.get("message")
            raise ReaderFailed("exception", msg if msg is not None else (
                f"the reader failed with {name.rpartition('.')[2]} (details withheld: they "
                f"may quote the file)"), exc_type=name)
        try:
            value = self._take(reply, conn)
        except ReaderFailed:
            self._stop(graceful=False)
            raise
        except Exception as exc:  # noqa: BLE001 - ArrowInvalid, OSError, ...: a bad result
            self._stop(graceful=False)
            raise ReaderFailed("protocol", f"the reader's result is not valid Arrow data "
                                           f"({type(exc).__name__})") from None
        self._recycle()
        return value

    def _take(self, reply: dict, conn) -> Any:
        if "frame" not in reply:
            return reply.get("value")
        if reply["frame"] == "memfd":
            fd = recv_handle(conn)
            try:
                seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
                if seals & _SEALS != _SEALS:
                    raise ReaderFailed("protocol", "the reader's result was not sealed")
                frame = _map_frame(f"/proc/self/fd/{fd}", self.config.validate)
            finally:
                os.close(fd)  # the mapping keeps the memory alive
        else:
            path = os.path.realpath(str(reply["frame"]))
            if os.path.dirname(path) != os.path.realpath(self._dir):
                raise ReaderFailed("protocol", "the reader's result is outside its folder")
            try:
                frame = _map_frame(path, self.config.validate)
            finally:
                os.unlink(path)
        if frame.height != reply.get("rows"):
            raise ReaderFailed("protocol", "the reader's result is incomplete")
        extra = reply.get("extra")
        return (frame, extra) if extra is not None else frame

    def _recycle(self) -> None:
        if self._served >= self.max_tasks:
            self._stop(graceful=True)

    def _memory_text(self, requested: int | None) -> str:
        cap = self.config.memory_limit
        asked = f" (it asked for {_size(requested)} at once)" if requested else ""
        limit = f" of {_size(cap)}" if cap else ""
        return (f"the reader process ran out of its memory limit{limit}{asked}; the file "
                f"may hold far more cells than it looks (a stray far cell, a zip bomb)")

    def _crashed(self, proc) -> ReaderFailed:
        proc.join(5)
        code = proc.exitcode
        tail = b""
        try:
            with open(self._stderr, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
                tail = f.read()
        except OSError:
            pass
        self._stop(graceful=False)
        alloc = _ALLOC_FAILED.search(tail)
        if alloc:
            n = int(alloc.group(1))
            return ReaderFailed("memory", self._memory_text(n), signal_name="SIGABRT",
                                requested_bytes=n)
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = {
                "SIGKILL": "killed (SIGKILL): most likely the system ran out of memory",
                "SIGABRT": "crashed (SIGABRT): the parser aborted",
                "SIGSEGV": "crashed (SIGSEGV): the parser read memory it does not own",
                "SIGBUS": "crashed (SIGBUS)",
            }.get(name, f"crashed ({name})")
            return ReaderFailed("crashed", f"the reader process {why}; the file may be "
                                           f"damaged or crafted", signal_name=name)
        return ReaderFailed("crashed", f"the reader process exited unexpectedly (status {code})")


_start_lock = threading.Lock()


@contextlib.contextmanager
def _without_main():
    """Start a worker without re-running the parent's ``__main__`` in it.

    multiprocessing (spawn and forkserver) makes each child import the parent's main
    module: the ``tandem`` console script, Prefect's engine, a test runner, or a script
    without an ``if __name__ == "__main__"`` guard (which would start the whole program
    again in the worker). The worker needs none of it: its code and every task's function
    are importable by name. So, while the worker starts, the preparation data omits the
    main module (its ``sys.path`` still travels)."""
    from multiprocessing import spawn

    with _start_lock:
        original = spawn.get_preparation_data

        def without_main(name):
            data = original(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = without_main
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def _map_frame(path: str, validate: bool):
    """Arrow IPC at ``path`` as a Polars frame over a memory map (no copy of numbers).

    Polars 2.1's ``read_ipc`` has no ``memory_map`` option and copies; pyarrow maps the
    file and ``pl.from_arrow`` keeps the buffers. The worker is untrusted, so the buffers
    are validated in full first."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.ipc

    table = pa.ipc.open_file(pa.memory_map(path)).read_all()
    if validate:
        table.validate(full=True)
    return pl.from_arrow(table, rechunk=False)


# ------------------------------------------------------------- one worker per process

_shared: IsolatedReader | None = None
_shared_key: tuple | None = None
_shared_lock = threading.Lock()


def shared_run(config: WorkerConfig, timeout: float | None, fn: Callable, *args,
               **kwargs) -> Any:
    """``fn`` in this process's one worker (started on first use, stopped at exit).

    Calls from several threads take turns. A call with another configuration than the
    running worker's replaces it."""
    global _shared, _shared_key
    key = (config, timeout)
    with _shared_lock:
        if _shared is None or _shared_key != key:
            if _shared is not None:
                _shared.close()
            _shared, _shared_key = IsolatedReader(config, timeout=timeout), key
        return _shared.run(fn, *args, **kwargs)


def shared_worker_pid() -> int | None:
    """The shared worker's pid, if one runs (for tests)."""
    return _shared.pid if _shared is not None else None


def close_shared() -> None:
    """Stop this process's worker."""
    global _shared, _shared_key
    with _shared_lock:
        if _shared is not None:
            _shared.close()
        _shared = _shared_key = None


@atexit.register
def _stop_at_exit() -> None:
    """At exit: the worker, then multiprocessing's fork server and resource tracker, each
    waited for. Left to themselves they end a moment *after* this process (when their pipe
    closes), re-parented to init, and stay as zombies where init does not reap."""
    close_shared()
    from multiprocessing import forkserver, resource_tracker

    # CPython's own test suite stops them the same way (``_stop``: close the pipe, waitpid).
    for helper in (getattr(forkserver, "_forkserver", None),
                   getattr(resource_tracker, "_resource_tracker", None)):
        stop = getattr(helper, "_stop", None)
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()
