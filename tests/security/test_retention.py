"""Raw files are not kept for ever (issue 17, item 11): a retention period, a purge that is
audited and keeps what exactly-once and lineage need (batch records, hashes)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

from typer.testing import CliRunner

from tandem.core import warehouse
from tandem.core.settings import Settings
from tandem.pipeline import intake
from tandem.pipeline.ingest import IngestRun, process_files
from tandem.pipeline.retention import purge_received
from tests.conftest import HEADER, canonical_rows
from tests.reliability.helpers import AS_OF


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _csv(path: Path, client: str = "C1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + canonical_rows(client, "T01", "2025-03-02", 1, "ORS", [5, 6, 7, 8]))
    return path


def _age(path: Path, days: float) -> None:
    when = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).timestamp()
    os.utime(path, (when, when))


def test_purge_deletes_old_raw_files_keeps_batches_and_audits(tandem_home, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("TANDEM_RECEIVED_RETENTION_DAYS", "30")
    settings = Settings()
    run = IngestRun.load(settings, as_of=AS_OF)
    old_src, new_src = _csv(tmp_path / "northside" / "old.csv", "C1"), \
        _csv(tmp_path / "northside" / "new.csv", "C2")
    old, new = process_files([old_src, new_src], run)
    assert old.status == new.status == "loaded"
    with warehouse.reader(settings) as con:
        stored = dict(con.execute("SELECT source_name, stored_path FROM batch").fetchall())
    _age(Path(stored["old.csv"]), 31)
    # an intake folder received 40 days ago (the token says when), and a recent one
    done = intake.intake_dir(settings, "done", "northside")
    aged = done / ((dt.datetime.now(dt.UTC) - dt.timedelta(days=40))
                   .strftime("%Y%m%dT%H%M%S%f") + "-abcdefabcdef")
    recent = done / (dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f") + "-123456123456")
    for folder in (aged, recent):
        folder.mkdir(parents=True)
        (folder / "old.csv").write_text("raw ids")
        (folder / intake.META).write_text(json.dumps({"sha256": "f" * 64}))

    dry = purge_received(settings, dry_run=True)
    assert dry.files == 2 and Path(stored["old.csv"]).exists() and aged.exists()
    report = purge_received(settings, trigger="sweep")
    assert report.files == 2
    assert not Path(stored["old.csv"]).exists() and Path(stored["new.csv"]).exists()
    assert not aged.exists() and recent.exists()

    # batch records stay: the same bytes again are still recognised, lineage still holds
    with warehouse.reader(settings) as con:
        assert con.execute("SELECT count(*) FROM batch").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM response WHERE batch_id = ?",
                           [old.batch_id]).fetchone()[0] == old.rows_loaded
    [again] = process_files([old_src], run)
    assert again.status == "duplicate_file"

    lines = [json.loads(x) for x in
             (settings.audit_dir / "retention.jsonl").read_text().splitlines()]
    summaries = [x for x in lines if x["action"] == "purge_received"]
    assert [(s["dry_run"], s["files"], s["trigger"]) for s in summaries] == [
        (True, 2, "cli"), (False, 2, "sweep")]
    purged = [x for x in lines if x["action"] == "purged_file" and not x["dry_run"]]
    assert {p["path"] for p in purged} == {
        str(Path(stored["old.csv"]).relative_to(settings.home_dir)),
        str((aged / "old.csv").relative_to(settings.home_dir))}
    assert {p["content_sha256"] for p in purged} == {Path(stored["old.csv"]).name[:64],
                                                     "f" * 64}
    assert _mode(settings.audit_dir / "retention.jsonl") & 0o077 == 0


def test_a_kept_copy_is_renewed_when_its_bytes_arrive_again(tandem_home, tmp_path):
    settings = Settings()
    run = IngestRun.load(settings, as_of=AS_OF)
    src = _csv(tmp_path / "northside" / "a.csv")
    [first] = process_files([src], run)
    with warehouse.reader(settings) as con:
        [(stored,)] = con.execute("SELECT stored_path FROM batch").fetchall()
    _age(Path(stored), 100)
    process_files([src], run)  # the same bytes again: a duplicate, the copy renewed
    assert purge_received(settings, days=90).files == 0
    assert Path(stored).exists()


def test_retention_zero_keeps_everything_and_the_cli_purges(tandem_home, tmp_path,
                                                           monkeypatch):
    from tandem.app.cli import app

    settings = Settings()
    kept = settings.received_dir / "northside" / ("b" * 64 + ".csv")
    kept.parent.mkdir(parents=True)
    kept.write_text("raw")
    _age(kept, 400)
    assert purge_received(settings, days=0).files == 0 and kept.exists()
    result = CliRunner().invoke(app, ["purge", "--days", "365", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would delete 1 kept file" in result.output and kept.exists()
    result = CliRunner().invoke(app, ["purge", "--days", "365"])
    assert result.exit_code == 0 and "Deleted 1 kept file" in result.output
    assert not kept.exists()
