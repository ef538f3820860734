"""Publishing marts: readers see the old publication or the new one, never a mix."""

from __future__ import annotations

import duckdb
import polars as pl
import pytest

from tandem.core import published


def test_publish_then_current_points_at_the_new_snapshot(tandem_home):
    assert published.current(tandem_home) is None
    snap = published.publish({"m": pl.DataFrame({"x": [1, 2, 3]})}, tandem_home,
                             meta={"as_of": "d"})
    cur = published.current(tandem_home)
    assert cur is not None and cur.version == snap.version and cur.tables == {"m": 3}
    con = published.open_snapshot(cur, tandem_home)
    assert con.execute("SELECT sum(x) FROM m").fetchone()[0] == 6
    info = dict(con.execute("SELECT key, value FROM publish_info").fetchall())
    assert info["as_of"] == "d" and info["version"] == snap.version


def test_a_reader_of_the_old_snapshot_keeps_its_numbers(tandem_home):
    published.publish({"m": pl.DataFrame({"x": [1]})}, tandem_home)
    opened = published.open_current(tandem_home)
    assert opened is not None
    old_snap, old_con = opened
    published.publish({"m": pl.DataFrame({"x": [5]})}, tandem_home)
    assert old_con.execute("SELECT x FROM m").fetchone()[0] == 1
    new_snap, new_con = published.open_current(tandem_home)
    assert new_snap.version != old_snap.version
    assert new_con.execute("SELECT x FROM m").fetchone()[0] == 5


def test_maintenance_expires_old_snapshots_but_keeps_the_newest_publications(tandem_home):
    import datetime as dt

    from tandem.pipeline.maintenance import KEEP_PUBLICATIONS, maintain

    snaps = [published.publish({"m": pl.DataFrame({"x": [i]})}, tandem_home) for i in range(6)]
    opened = published.open_current(tandem_home)
    assert opened is not None
    reader_snap, reader = opened  # a dashboard holds the newest publication open
    done = maintain(tandem_home, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=60))
    assert done["expired_snapshots"] > 0
    with published.warehouse.reader(tandem_home) as con:
        kept = [s.snapshot_id for s in published.publications(con)]
    assert kept == [s.snapshot_id for s in reversed(snaps)][:KEEP_PUBLICATIONS]
    assert reader.execute("SELECT x FROM m").fetchone()[0] == 5  # the reader reads on
    old = snaps[0]
    with pytest.raises(duckdb.Error, match="snapshot"):
        published.query_snapshot(old, "SELECT x FROM m", settings=tandem_home)
    assert published.current(tandem_home).snapshot_id == reader_snap.snapshot_id


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()  # noqa: S608 - table names come from the snapshot or the test itself


def test_a_patch_replaces_only_the_touched_clients_rows(tandem_home):
    rows = pl.DataFrame({"clinic_id": ["c", "c", "c"], "client_key": ["a", "b", "b"],
                         "x": [1, 2, 3]})
    first = published.publish({"rows": rows, "pop": pl.DataFrame({"n": [3]}), "gone": rows},
                            tandem_home,
                            patch=published.RowPatch("s1", None, rows.head(0), frozenset({"rows"})))
    assert not first.patched
    old = published.open_snapshot(first, tandem_home)
    # Client b changed (its new rows), client a did not: the frame handed over has a's old
    # row replaced by a marker that must NOT be published, since a is not in the patch.
    new_rows = pl.DataFrame({"clinic_id": ["c", "c"], "client_key": ["a", "b"], "x": [99, 7]})
    touched = pl.DataFrame({"clinic_id": ["c"], "client_key": ["b"]})
    snap = published.publish({"rows": new_rows, "pop": pl.DataFrame({"n": [2]})}, tandem_home,
                           meta={"as_of": "d"},
                           patch=published.RowPatch("s2", "s1", touched, frozenset({"rows"})))
    assert snap.patched and snap.tables == {"rows": 2, "pop": 1}
    con = published.open_snapshot(published.current(tandem_home), tandem_home)
    assert _rows(con, "rows") == [("c", "a", 1), ("c", "b", 7)]
    assert _rows(con, "pop") == [(2,)]
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'marts' "
        "AND database_name = current_database()").fetchall()}
    assert tables == {"rows", "pop", "publish_info", "publication"}
    info = dict(con.execute("SELECT key, value FROM publish_info").fetchall())
    assert info["lineage"] == "s2" and info["as_of"] == "d"
    # The old snapshot's reader still sees the old version, untouched.
    assert _rows(old, "rows") == [("c", "a", 1), ("c", "b", 2), ("c", "b", 3)]
    assert _rows(old, "gone") == _rows(old, "rows")


def test_a_patch_on_another_base_writes_the_snapshot_whole(tandem_home):
    published.publish({"rows": pl.DataFrame({"clinic_id": ["c"], "client_key": ["a"],
                                           "x": [1]})},
                    tandem_home, patch=published.RowPatch("s1", None, pl.DataFrame()))
    full = pl.DataFrame({"clinic_id": ["c", "c"], "client_key": ["a", "b"], "x": [5, 6]})
    touched = pl.DataFrame({"clinic_id": ["c"], "client_key": ["b"]})
    snap = published.publish({"rows": full}, tandem_home,
                           patch=published.RowPatch("s3", "s2", touched, frozenset({"rows"})))
    assert not snap.patched
    con = published.open_snapshot(snap, tandem_home)
    assert _rows(con, "rows") == [("c", "a", 5), ("c", "b", 6)]


def test_a_patch_rewrites_a_table_whose_columns_changed(tandem_home):
    base = pl.DataFrame({"clinic_id": ["c"], "client_key": ["a"], "x": [None]})
    published.publish({"rows": base}, tandem_home,
                    patch=published.RowPatch("s1", None, base.head(0), frozenset({"rows"})))
    new = pl.DataFrame({"clinic_id": ["c", "c"], "client_key": ["a", "b"], "x": [1.5, 2.5]})
    touched = pl.DataFrame({"clinic_id": ["c"], "client_key": ["b"]})
    snap = published.publish({"rows": new}, tandem_home,
                           patch=published.RowPatch("s2", "s1", touched, frozenset({"rows"})))
    assert snap.patched
    con = published.open_snapshot(snap, tandem_home)
    assert _rows(con, "rows") == [("c", "a", 1.5), ("c", "b", 2.5)]
