"""Publishing marts: readers see the old snapshot or the new one, never a mix."""

from __future__ import annotations

import duckdb
import polars as pl

from tandem import publish


def test_publish_then_current_points_at_the_new_snapshot(tandem_home):
    assert publish.current(tandem_home) is None
    snap = publish.publish({"m": pl.DataFrame({"x": [1, 2, 3]})}, tandem_home, meta={"as_of": "d"})
    cur = publish.current(tandem_home)
    assert cur is not None and cur.version == snap.version and cur.tables == {"m": 3}
    con = duckdb.connect(str(cur.path), read_only=True)
    assert con.execute("SELECT sum(x) FROM m").fetchone()[0] == 6
    info = dict(con.execute("SELECT key, value FROM publish_info").fetchall())
    assert info["as_of"] == "d" and info["version"] == snap.version


def test_a_reader_of_the_old_snapshot_keeps_its_numbers(tandem_home):
    publish.publish({"m": pl.DataFrame({"x": [1]})}, tandem_home)
    opened = publish.open_current(tandem_home)
    assert opened is not None
    old_snap, old_con = opened
    publish.publish({"m": pl.DataFrame({"x": [5]})}, tandem_home)
    assert old_con.execute("SELECT x FROM m").fetchone()[0] == 1
    new_snap, new_con = publish.open_current(tandem_home)
    assert new_snap.version != old_snap.version
    assert new_con.execute("SELECT x FROM m").fetchone()[0] == 5


def test_old_snapshots_are_pruned(tandem_home):
    for i in range(6):
        publish.publish({"m": pl.DataFrame({"x": [i]})}, tandem_home)
    files = sorted(tandem_home.published_dir.glob("marts-*.duckdb"))
    assert len(files) == publish.KEEP_SNAPSHOTS
    assert publish.current(tandem_home).path == files[-1]
    assert not list(tandem_home.published_dir.glob("*.tmp"))
