"""The reader worker: exceptions, crashes, memory caps, timeouts, results, and no process
left over (tandem.pipeline.isolation)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from multiprocessing.reduction import send_handle

import pyarrow as pa
import pytest

from tandem.pipeline.isolation import (
    IsolatedReader,
    ReaderFailed,
    WorkerConfig,
    _map_frame,
    close_shared,
    shared_run,
    shared_worker_pid,
)
from tandem.pipeline.sources import SourceError
from tests.conftest import REPO_ROOT
from tests.pipeline import misbehaving as R
from tests.reliability.xlsx_factory import stray_cell_xlsx

# An idle worker that has used Polars maps ~1.1 GiB of address space: 2 GiB leaves room.
CAP = WorkerConfig(memory_limit=2 << 30, safe_exceptions=(SourceError,))


def children(pid: int | None = None) -> dict[int, str]:
    """Direct children of ``pid`` (default: this process): pid -> state letter."""
    pid = pid or os.getpid()
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out[int(entry)] = fields[0]
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def reader():
    with IsolatedReader(CAP, timeout=60) as r:
        yield r
    assert not [p for p, s in children().items() if s == "Z"], "zombie left behind"


def test_exception_text_is_withheld_and_the_worker_is_reused(reader):
    first = reader.run(R.pid)
    with pytest.raises(ReaderFailed) as info:
        reader.run(R.raises_with_contents)
    err = info.value
    assert err.kind == "exception" and err.exc_type == "builtins.ValueError"
    assert "Jane" not in str(err) and "1980" not in str(err) and "ValueError" in str(err)
    assert reader.run(R.pid) == first  # an exception does not cost a worker


def test_safe_exceptions_keep_their_message(reader):
    def_msg = "march.csv ends in the middle of a record (line 12 has no line break)"
    with pytest.raises(ReaderFailed, match="line 12 has no line break"):
        reader.run(_raise_source_error, def_msg)


def _raise_source_error(message: str):
    raise SourceError(message)


def test_a_panic_past_except_exception_is_caught(reader):
    with pytest.raises(ReaderFailed) as info:
        reader.run(R.panics)
    assert info.value.exc_type.endswith("FakePanic") and "Jane" not in str(info.value)


@pytest.mark.parametrize("fn, sig, words", [
    (R.aborts, "SIGABRT", "crashed (SIGABRT)"),
    (R.segfaults, "SIGSEGV", "crashed (SIGSEGV)"),
    (R.killed, "SIGKILL", "killed (SIGKILL)"),
])
def test_a_crash_becomes_an_error_and_the_next_call_gets_a_fresh_worker(reader, fn, sig,
                                                                        words):
    before = reader.run(R.pid)
    with pytest.raises(ReaderFailed) as info:
        reader.run(fn)
    assert info.value.kind == "crashed" and info.value.signal_name == sig
    assert words in str(info.value)
    assert not alive(before)
    assert reader.run(R.pid) != before
    assert reader.started == 2


def test_a_python_allocation_over_the_cap_fails_in_the_child(reader):
    with pytest.raises(ReaderFailed) as info:
        reader.run(R.allocates, 4 << 30)
    assert info.value.kind == "memory" and "2.0 GiB" in str(info.value)
    assert reader.run(R.pid)  # a fresh worker serves the next call


def test_the_stray_cell_workbook_aborts_in_the_child_not_the_parent(reader):
    """fastexcel asks for 512 GiB (17 billion cells x 32 B) and aborts: in the worker."""
    with pytest.raises(ReaderFailed) as info:
        reader.run(R.read_excel, stray_cell_xlsx())
    err = info.value
    assert err.kind == "memory" and err.requested_bytes == 512 << 30
    assert "asked for 512.0 GiB at once" in str(err)


def test_a_hang_is_stopped_at_the_timeout(reader):
    before = reader.run(R.pid)
    reader.timeout = 1
    t = time.monotonic()
    with pytest.raises(ReaderFailed) as info:
        reader.run(R.sleeps, 30)
    assert info.value.kind == "timeout" and time.monotonic() - t < 10
    assert not alive(before)


def test_the_worker_is_recycled_after_max_tasks():
    with IsolatedReader(CAP, max_tasks=3) as r:
        pids = [r.run(R.pid) for _ in range(7)]
    assert len(set(pids)) == 3 and r.started == 3


def test_close_leaves_no_worker_and_no_zombie():
    r = IsolatedReader(CAP)
    wpid = r.run(R.pid)
    r.close()
    assert not alive(wpid)
    assert not [p for p, s in children().items() if s == "Z"]


def test_the_shared_worker_is_started_once_and_stopped_by_close_shared():
    close_shared()
    assert shared_worker_pid() is None
    first = shared_run(CAP, 60, R.pid)
    assert shared_run(CAP, 60, R.pid) == first == shared_worker_pid()
    close_shared()
    assert not alive(first) and shared_worker_pid() is None


@pytest.mark.parametrize("how", ["SIGKILL", "exit"])
def test_the_worker_does_not_outlive_its_ingest_process(tmp_path, how):
    """Killed outright (no atexit) or ending normally, the parent leaves no worker."""
    pid_file = tmp_path / "worker.pid"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from tandem.pipeline.isolation import WorkerConfig, shared_run
        from tests.pipeline.misbehaving import pid, sleeps
        if __name__ == "__main__":
            if {how!r} == "exit":
                with open({str(pid_file)!r}, "w") as f:
                    f.write(str(shared_run(WorkerConfig(), 60, pid)))
            else:
                shared_run(WorkerConfig(), 600, sleeps, 120, {str(pid_file)!r})
    """)
    (tmp_path / "parent.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")])
    deadline = time.monotonic() + 90
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    helpers = [worker]
    if how == "SIGKILL":
        assert alive(worker)
        with open(f"/proc/{worker}/stat") as f:
            fork_server = int(f.read().rsplit(")", 1)[1].split()[1])
        helpers.append(fork_server)  # the worker's parent: multiprocessing's fork server
        helpers += [p for p in children(parent.pid) if p != fork_server]  # resource tracker
        parent.send_signal(signal.SIGKILL)
    parent.wait(60)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in helpers):
        assert time.monotonic() < deadline, \
            f"outlived their parent: {[p for p in helpers if alive(p)]}"
        time.sleep(0.1)


def test_frames_and_notes_come_back_equal():
    with IsolatedReader(CAP) as r:
        got = r.run(R.frame, 100_000, 4)
        frame, notes = r.run(R.frame_with_notes)
    assert got.equals(R.frame(100_000, 4))
    assert notes == ["ignored sheet 'notes' (not a period sheet)"] and frame.equals(R.frame())
    # the worker is gone and the descriptor closed: the mapping still reads
    assert got["c3"][99_999] == "v99999_3"


def test_the_parent_refuses_forged_replies(tmp_path):
    """A compromised worker cannot hand over an unsealed memfd, a path outside the private
    folder, or Arrow data that is not valid (Polars treats it as undefined behaviour)."""
    r = IsolatedReader(CAP)
    try:
        with pytest.raises(ReaderFailed, match="outside its folder"):
            r._take({"ok": True, "frame": "/etc/passwd", "rows": 1}, None)
        here, there = mp.Pipe()
        fd = os.memfd_create("forged", os.MFD_ALLOW_SEALING)
        R.frame(5, 1).write_ipc(f"/proc/self/fd/{fd}")
        send_handle(there, fd, os.getpid())
        os.close(fd)
        with pytest.raises(ReaderFailed, match="not sealed"):
            r._take({"ok": True, "frame": "memfd", "rows": 5}, here)
    finally:
        r.close()
    bad = pa.Array.from_buffers(pa.string(), 1, [
        None, pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00"), pa.py_buffer(b"\xff\xfe")])
    path = tmp_path / "bad.arrow"
    with pa.ipc.new_file(str(path), pa.schema([("a", pa.string())])) as w:
        w.write_table(pa.table({"a": bad}))
    with pytest.raises(pa.ArrowInvalid):
        _map_frame(str(path), validate=True)


def test_the_worker_does_not_run_the_parents_main_module(tmp_path):
    """A script without an ``if __name__ == "__main__"`` guard (or the ``tandem`` console
    script, or Prefect's engine) is not started again inside the worker."""
    marker = tmp_path / "main-ran"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        with open({str(marker)!r}, "a") as f:
            f.write(str(os.getpid()) + "\\n")
        from tandem.pipeline.isolation import WorkerConfig, shared_run
        from tests.pipeline.misbehaving import pid
        print("worker", shared_run(WorkerConfig(), 60, pid))
    """)
    (tmp_path / "unguarded.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "unguarded.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("worker ")
    assert len(marker.read_text().split()) == 1  # the script ran once: in the parent
