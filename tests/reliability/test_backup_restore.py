"""``tandem backup`` / ``tandem restore``: restore into an empty home and compare."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner

from tandem import backup, publish
from tandem.settings import Settings
from tests.reliability import helpers as h

TABLES = ("batch", "response", "reported_total", "quarantine", "validation_result",
          "schema_info")


@pytest.fixture
def populated(tandem_home: Settings, corpus: Path) -> Settings:
    """A home with a few batches of every format, a published snapshot and an audit log."""
    h.install_contracts(tandem_home, corpus)
    pipe = h.Pipeline(tandem_home)
    for clinic in sorted((corpus / "files").iterdir()):
        for f in sorted(clinic.iterdir())[:1]:
            pipe.load(f)
    con = duckdb.connect(str(tandem_home.warehouse_path), read_only=True)
    marts = {"audit_batch": pl.from_arrow(con.sql("SELECT * FROM batch").to_arrow_table()),
             "mart_counts": pl.from_arrow(con.sql(
                 "SELECT clinic_id, count(*) AS n FROM response GROUP BY 1").to_arrow_table())}
    con.close()
    publish.publish(marts, tandem_home, meta={"as_of": "2026-06-30"})
    (tandem_home.home_dir / "audit").mkdir(exist_ok=True)
    (tandem_home.home_dir / "audit" / "access.jsonl").write_text('{"user": "q", "action": "x"}\n')
    (tandem_home.home_dir / "users.yaml").write_text("users: {}\n")
    return tandem_home


def _dump(path: Path) -> dict[str, list]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return {t: sorted(map(repr, con.execute(f"SELECT * FROM {t}").fetchall()))  # noqa: S608
                for t in TABLES if t in names}
    finally:
        con.close()


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
    assert _dump(target.warehouse_path) == _dump(populated.warehouse_path)
    before, after = publish.current(populated), publish.current(target)
    assert after is not None and after.version == before.version
    assert after.path.read_bytes() == before.path.read_bytes()
    assert h.open_snapshot_tables(after.path) == h.open_snapshot_tables(before.path)
    for rel in ("audit/access.jsonl", "users.yaml"):
        assert (target.home_dir / rel).read_bytes() == (populated.home_dir / rel).read_bytes()
    site = sorted(p.name for p in (target.local_contracts_dir / "clinics").iterdir())
    assert site == sorted(p.name for p in (populated.local_contracts_dir / "clinics").iterdir())
    assert not list(target.home_dir.glob(".restore-*"))


def test_restore_refuses_a_non_empty_home_without_force(populated, tmp_path):
    backup.backup(tmp_path / "bk", populated)
    target = _restore_home(tmp_path)
    target.ensure_dirs()
    (target.home_dir / "warehouse.duckdb").write_bytes(b"someone's data")
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(tmp_path / "bk", target)
    assert (target.home_dir / "warehouse.duckdb").read_bytes() == b"someone's data"
    backup.restore(tmp_path / "bk", target, force=True)
    assert _dump(target.warehouse_path) == _dump(populated.warehouse_path)


def test_a_damaged_backup_is_refused_before_anything_is_restored(populated, tmp_path):
    backup.backup(tmp_path / "bk", populated)
    manifest = json.loads((tmp_path / "bk" / backup.MANIFEST).read_text())
    snap = next(r for r in manifest["files"] if r.startswith("published/marts-"))
    with open(tmp_path / "bk" / snap, "r+b") as fh:
        fh.seek(5000)
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
    from tandem.pseudonym import load_key

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


def test_backup_is_consistent_while_the_writer_lock_is_held_elsewhere(populated, tmp_path):
    """Backup waits for the writer (no half batch is copied) and fails clearly if it must."""
    from filelock import FileLock

    with FileLock(str(populated.lock_path)), pytest.raises(TimeoutError):
        backup.backup(tmp_path / "bk", populated, lock_timeout=0.2)
    assert not (tmp_path / "bk").exists()
    assert not list(tmp_path.glob(".bk.*.partial"))


def test_the_cli_commands_back_up_and_restore(populated, tmp_path, monkeypatch):
    import typer

    from tandem.backup_cli import backup_command, restore_command

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
