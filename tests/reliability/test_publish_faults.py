"""Publishing under faults: kill -9 mid-publish, a full disk, readers during publishes.

The newest publication must always be complete (its tables hold the row counts it records);
a failed publish leaves the newest publication as it was; the next publish succeeds.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import pytest

from tandem.core import published
from tandem.core.settings import Settings
from tests.conftest import REPO_ROOT
from tests.reliability import helpers as h

BIG = 3_000_000  # rows per mart: the snapshot write takes a second or two


def _publish_child(settings: Settings, rows: int, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.publish_child", str(rows)], cwd=REPO_ROOT,
        env=h.child_env(settings, TANDEM_TEST_FIRST="1", **env), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def assert_current_is_complete(settings: Settings) -> published.Snapshot:
    """The newest publication opens, and every table holds what it says."""
    snap = published.current(settings)
    assert snap is not None
    counts = h.open_snapshot_tables(settings, snap)
    assert {k: counts[k] for k in snap.tables} == snap.tables
    info = dict(published.query_snapshot(snap, "SELECT key, value FROM publish_info",
                                         settings=settings))
    assert info["version"] == snap.version
    return snap


def _republish_works(settings: Settings) -> None:
    snap = published.publish({"m": pl.DataFrame({"x": [1, 2]})}, settings)
    assert assert_current_is_complete(settings).version == snap.version


@pytest.mark.parametrize("point, expect", [("publish_after_marts", "first"),
                                           ("publish_before_commit", "first"),
                                           ("publish_after_commit", "second")])
def test_kill_at_a_publish_point_leaves_current_complete(tandem_home, point, expect):
    proc = _publish_child(tandem_home, 1000, TANDEM_TEST_FAULT=point)
    h.wait_ready(proc)
    out = h.finish(proc)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    snap = assert_current_is_complete(tandem_home)
    info = dict(published.query_snapshot(snap, "SELECT key, value FROM publish_info",
                                         settings=tandem_home))
    assert info["as_of"] == expect
    _republish_works(tandem_home)


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.8, 1.5])
def test_kill_while_the_snapshot_is_written_leaves_current_complete(tandem_home, delay):
    proc = _publish_child(tandem_home, BIG)
    h.wait_ready(proc)
    out = h.finish(proc, kill_after=delay)
    assert out.killed_by_us or out.returncode == 0
    assert_current_is_complete(tandem_home)
    _republish_works(tandem_home)


def test_a_full_disk_fails_the_publish_clearly_and_current_keeps_the_old_snapshot(tandem_home):
    proc = _publish_child(tandem_home, BIG, TANDEM_TEST_FSIZE=str(2_000_000))
    h.wait_ready(proc)
    out = h.finish(proc)
    assert out.returncode == 1, out.stdout
    assert "File too large" in out.stderr  # a clear cause, not a corrupt file
    snap = assert_current_is_complete(tandem_home)
    assert snap.tables["mart_outcomes"] == 100  # still the first publish
    _republish_works(tandem_home)
    # the failed publish's half-written files (if any are left) are no snapshot's: the
    # upkeep gives their space back, and afterwards no file is unaccounted for
    from tandem.core import warehouse
    from tandem.pipeline.maintenance import FILE_GRACE, maintain

    maintain(tandem_home, now=dt.datetime.now(dt.UTC) + FILE_GRACE * 2)
    with warehouse.writer(tandem_home) as con:
        left = con.execute("CALL ducklake_delete_orphaned_files('lake', cleanup_all => true, "
                           "dry_run => true)").fetchall()
    assert left == []
    assert_current_is_complete(tandem_home)


def test_readers_during_publishes_always_see_one_complete_snapshot(tandem_home):
    """The dashboard's way of reading (the newest publication, pinned) under 12 publishes."""
    published.publish({"m": pl.DataFrame({"x": [0]})}, tandem_home)
    stop = threading.Event()
    reads: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                opened = published.open_current(tandem_home)
                assert opened is not None
                snap, con = opened
                try:
                    n, total = con.execute("SELECT count(*), sum(x) FROM m").fetchone()
                    k = con.execute("SELECT count(*) FROM m2").fetchone()[0] if n > 1 else n
                finally:
                    con.close()
                if n != snap.tables["m"] or total != n * (n - 1) // 2 or k != n:
                    errors.append(f"{snap.version}: {n} rows, sum {total}, m2 {k}")
                reads.append(n)
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                errors.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(2, 14):
            frame = pl.DataFrame({"x": list(range(i * 20_000))})
            published.publish({"m": frame, "m2": frame}, tandem_home)
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert len(reads) > 20 and len(set(reads)) > 3  # readers saw several snapshots
    assert published.current(tandem_home).tables["m"] == 13 * 20_000
