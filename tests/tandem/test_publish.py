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


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()  # noqa: S608


def test_a_patch_replaces_only_the_touched_clients_rows(tandem_home):
    rows = pl.DataFrame({"clinic_id": ["c", "c", "c"], "client_key": ["a", "b", "b"],
                         "x": [1, 2, 3]})
    first = publish.publish({"rows": rows, "pop": pl.DataFrame({"n": [3]}), "gone": rows},
                            tandem_home,
                            patch=publish.RowPatch("s1", None, rows.head(0), frozenset({"rows"})))
    assert not first.patched
    old = duckdb.connect(str(first.path), read_only=True)
    # Client b changed (its new rows), client a did not: the frame handed over has a's old
    # row replaced by a marker that must NOT be published, since a is not in the patch.
    new_rows = pl.DataFrame({"clinic_id": ["c", "c"], "client_key": ["a", "b"], "x": [99, 7]})
    touched = pl.DataFrame({"clinic_id": ["c"], "client_key": ["b"]})
    snap = publish.publish({"rows": new_rows, "pop": pl.DataFrame({"n": [2]})}, tandem_home,
                           meta={"as_of": "d"},
                           patch=publish.RowPatch("s2", "s1", touched, frozenset({"rows"})))
    assert snap.patched and snap.tables == {"rows": 2, "pop": 1}
    con = duckdb.connect(str(publish.current(tandem_home).path), read_only=True)
    assert _rows(con, "rows") == [("c", "a", 1), ("c", "b", 7)]
    assert _rows(con, "pop") == [(2,)]
    tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert tables == {"rows", "pop", "publish_info"}
    info = dict(con.execute("SELECT key, value FROM publish_info").fetchall())
    assert info["lineage"] == "s2" and info["as_of"] == "d"
    # The old snapshot's reader still sees the old version, untouched.
    assert _rows(old, "rows") == [("c", "a", 1), ("c", "b", 2), ("c", "b", 3)]
    assert _rows(old, "gone") == _rows(old, "rows")


def test_a_patch_on_another_base_writes_the_snapshot_whole(tandem_home):
    publish.publish({"rows": pl.DataFrame({"clinic_id": ["c"], "client_key": ["a"],
                                           "x": [1]})},
                    tandem_home, patch=publish.RowPatch("s1", None, pl.DataFrame()))
    full = pl.DataFrame({"clinic_id": ["c", "c"], "client_key": ["a", "b"], "x": [5, 6]})
    touched = pl.DataFrame({"clinic_id": ["c"], "client_key": ["b"]})
    snap = publish.publish({"rows": full}, tandem_home,
                           patch=publish.RowPatch("s3", "s2", touched, frozenset({"rows"})))
    assert not snap.patched
    con = duckdb.connect(str(snap.path), read_only=True)
    assert _rows(con, "rows") == [("c", "a", 5), ("c", "b", 6)]


def test_a_patch_rewrites_a_table_whose_columns_changed(tandem_home):
    base = pl.DataFrame({"clinic_id": ["c"], "client_key": ["a"], "x": [None]})
    publish.publish({"rows": base}, tandem_home,
                    patch=publish.RowPatch("s1", None, base.head(0), frozenset({"rows"})))
    new = pl.DataFrame({"clinic_id": ["c", "c"], "client_key": ["a", "b"], "x": [1.5, 2.5]})
    touched = pl.DataFrame({"clinic_id": ["c"], "client_key": ["b"]})
    snap = publish.publish({"rows": new}, tandem_home,
                           patch=publish.RowPatch("s2", "s1", touched, frozenset({"rows"})))
    assert snap.patched
    con = duckdb.connect(str(snap.path), read_only=True)
    assert _rows(con, "rows") == [("c", "a", 1.5), ("c", "b", 2.5)]
