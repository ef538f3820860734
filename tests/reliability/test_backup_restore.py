"""``tandem backup`` / ``tandem restore``: restore into an empty home and compare."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from tandem.core import published, warehouse
from tandem.core.settings import Settings
from tandem.pipeline import backup
from tests.reliability import helpers as h

TABLES = ("batch", "response", "reported_total", "quarantine", "validation_result",
          "schema_info", "quarantine_resolution")


@pytest.fixture
def populated(tandem_home: Settings, corpus: Path) -> Settings:
    """A home with a few batches of every format, a published snapshot and an audit log."""
    h.install_contracts(tandem_home, corpus)
    pipe = h.Pipeline(tandem_home)
    for clinic in sorted((corpus / "files").iterdir()):
        for f in sorted(clinic.iterdir())[:1]:
            pipe.load(f)
    with warehouse.writer(tandem_home) as con:  # what a reprocess records (table made late)
        warehouse.ensure_tables(con, ["quarantine_resolution"])
        warehouse.run_transaction(con, lambda c: c.execute(
            "INSERT INTO quarantine_resolution VALUES (1, 'line 2', 'ORS', 2, 'loaded', now())"),
            what="record a resolution")
    with warehouse.reader(tandem_home) as con:
        marts = {"audit_batch": pl.from_arrow(con.sql("SELECT * FROM batch").to_arrow_table()),
                 "mart_counts": pl.from_arrow(con.sql(
                     "SELECT clinic_id, count(*) AS n FROM response GROUP BY 1").to_arrow_table())}
    published.publish(marts, tandem_home, meta={"as_of": "2026-06-30"})
    (tandem_home.home_dir / "audit").mkdir(exist_ok=True)
    (tandem_home.home_dir / "audit" / "access.jsonl").write_text('{"user": "q", "action": "x"}\n')
    (tandem_home.home_dir / "users.yaml").write_text("users: {}\n")
    return tandem_home


def _dump(settings: Settings) -> dict[str, list]:
    with warehouse.reader(settings) as con:
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall()))  # noqa: S608 - table names come from the snapshot or the test itself
                for t in TABLES}


def _restore_home(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "restored", pseudonym_key="test-only-key")


def test_backup_then_restore_into_an_empty_home_gives_the_same_data(populated, tmp_path):
    report = backup.backup(tmp_path / "bk", populated)
    manifest = json.loads((tmp_path / "bk" / backup.MANIFEST).read_text())
    assert manifest["warehouse"]["response_rows"] > 0
    assert manifest["includes_pseudonym_key"] is False
    assert not any(rel.startswith(("secrets/", "received/")) for rel in manifest["files"])
    assert report.files == len(manifest["files"])

    target = _restore_home(tmp_path)
    backup.restore(tmp_path / "bk", target)
    assert _dump(target) == _dump(populated)
    assert len(_dump(target)["quarantine_resolution"]) == 1  # a reprocess's record kept
    before, after = published.current(populated), published.current(target)
    assert after is not None and after.version == before.version
    assert after.tables == before.tables
    assert h.open_snapshot_tables(target, after) == h.open_snapshot_tables(populated, before)
    for table in before.tables:
        sql = f'SELECT * FROM "{table}" ORDER BY ALL'  # noqa: S608 - table names come from the snapshot or the test itself
        assert published.query_snapshot(after, sql, settings=target) == \
            published.query_snapshot(before, sql, settings=populated)
    for rel in ("audit/access.jsonl", "users.yaml"):
        assert (target.home_dir / rel).read_bytes() == (populated.home_dir / rel).read_bytes()
    site = sorted(p.name for p in (target.local_contracts_dir / "clinics").iterdir())
    assert site == sorted(p.name for p in (populated.local_contracts_dir / "clinics").iterdir())
    assert not list(target.home_dir.glob(".restore-*"))


def test_restore_refuses_a_non_empty_home_without_force(populated, tmp_path):
    backup.backup(tmp_path / "bk", populated)
    target = _restore_home(tmp_path)
    target.ensure_dirs()
    (target.home_dir / "users.yaml").write_text("someone's data")
    with warehouse.writer(target) as con:  # and a lake of its own, with a batch in it
        warehouse.run_transaction(con, lambda c: c.execute(
            "INSERT INTO batch_record (batch_id, source_name, content_sha256, size_bytes, "
            "received_at, status, rows_received, rows_loaded, rows_quarantined, rows_duplicate, "
            "rows_replaced, trigger) VALUES (999, 'x.csv', 'h', 1, now(), 'failed', 0, 0, 0, "
            "0, 0, 'cli')"), what="write")
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(tmp_path / "bk", target)
    assert (target.home_dir / "users.yaml").read_text() == "someone's data"
    backup.restore(tmp_path / "bk", target, force=True)
    assert _dump(target) == _dump(populated)


def test_a_damaged_backup_is_refused_before_anything_is_restored(populated, tmp_path):
    backup.backup(tmp_path / "bk", populated)
    manifest = json.loads((tmp_path / "bk" / backup.MANIFEST).read_text())
    data = next(r for r in manifest["files"] if r.startswith("lake/data/")
                and manifest["files"][r]["size"] > 600)
    with open(tmp_path / "bk" / data, "r+b") as fh:
        fh.seek(500)
        fh.write(b"\x00garbage")
    target = _restore_home(tmp_path)
    with pytest.raises(backup.BackupError, match="damaged"):
        backup.restore(tmp_path / "bk", target)
    assert not target.home_dir.exists() or not any(
        p.is_file() for p in target.home_dir.rglob("*"))


def test_a_manifest_path_outside_the_backup_is_refused(populated, tmp_path):
    backup.backup(tmp_path / "bk", populated)
    path = tmp_path / "bk" / backup.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"]["../../evil.txt"] = {"sha256": "0" * 64, "size": 1}
    path.write_text(json.dumps(manifest))
    with pytest.raises(backup.BackupError, match="unsafe path"):
        backup.restore(tmp_path / "bk", _restore_home(tmp_path))
    assert not (tmp_path / "evil.txt").exists()


def test_the_key_is_backed_up_only_when_asked_and_restored_private(populated, tmp_path):
    from tandem.core.pseudonym import load_key

    plain = Settings(home=populated.home_dir)  # no TANDEM_PSEUDONYM_KEY: the key file
    os.environ.pop("TANDEM_PSEUDONYM_KEY", None)
    key = load_key(plain)
    backup.backup(tmp_path / "bk", plain, include_key=True)
    target = Settings(home=tmp_path / "restored")
    backup.restore(tmp_path / "bk", target)
    key_file = target.secrets_dir / "pseudonym.key"
    assert key_file.read_bytes() == key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert target.secrets_dir.stat().st_mode & 0o777 == 0o700


def test_backup_refuses_a_folder_inside_the_home_or_not_empty(populated, tmp_path):
    with pytest.raises(backup.BackupError, match="outside"):
        backup.backup(populated.home_dir / "bk", populated)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.backup(tmp_path / "full", populated)


def test_backup_is_one_consistent_snapshot_while_writers_commit(populated, tmp_path, corpus):
    """No lock: a backup copies the lake as of one snapshot while another process loads.
    Whatever it copied, each batch in it is whole (its answers and its record together)."""
    import threading

    pipe = h.Pipeline(populated)
    files = [f for clinic in sorted((corpus / "files").iterdir())
             for f in sorted(clinic.iterdir())[1:4]]
    loader = threading.Thread(target=lambda: [pipe.load(f) for f in files])
    loader.start()
    try:
        backup.backup(tmp_path / "bk", populated)
    finally:
        loader.join()
    target = _restore_home(tmp_path)
    backup.restore(tmp_path / "bk", target)
    with warehouse.reader(target) as con:
        loaded = dict(con.execute("SELECT batch_id, rows_loaded FROM batch "
                                  "WHERE status = 'loaded'").fetchall())
        rows = dict(con.execute(
            "SELECT batch_id, count(*) FROM (SELECT batch_id FROM response UNION ALL "
            "SELECT batch_id FROM reported_total) GROUP BY 1").fetchall())
    assert {b: rows.get(b, 0) for b in loaded} == loaded  # every batch whole
    assert set(rows) <= set(loaded)  # no answer without its batch record


def test_the_cli_commands_back_up_and_restore(populated, tmp_path, monkeypatch):
    import typer

    from tandem.app.backup_cli import backup_command, restore_command

    app = typer.Typer()
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
    runner = CliRunner()
    res = runner.invoke(app, ["backup", str(tmp_path / "bk")])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path / "restored"))
    res = runner.invoke(app, ["restore", str(tmp_path / "bk")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["restore", str(tmp_path / "bk")])
    assert res.exit_code == 2 and "restore refused" in res.output
    shutil.rmtree(tmp_path / "restored")
