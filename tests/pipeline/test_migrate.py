"""``tandem migrate``: a warehouse made by the release before the lake (schema v2, written by
DuckDB 2.0) moves into the lake with every batch, answer and publication, once.

The fixture is a real home of that release (tests/fixtures/README.md says how it was made).
DuckDB 1.5 cannot open its files, so the migration reads them through DuckDB 2.0 in a
helper process, installed from the package registry into Tandem's cache on first use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tandem.core import published, warehouse
from tandem.core.settings import Settings
from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "fixtures"
KEY = "fixture-key"


def _home(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    with zipfile.ZipFile(FIXTURES / "home-v2.zip") as z:
        z.extractall(home)
    return Settings(home=home, pseudonym_key=KEY)


def _tandem(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TANDEM_HOME": str(settings.home_dir), "TANDEM_PSEUDONYM_KEY": KEY}
    return subprocess.run([sys.executable, "-m", "tandem.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Settings:
    settings = _home(tmp_path_factory.mktemp("migrate"))
    proc = _tandem(settings, "migrate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Migrated 63 batches" in proc.stdout  # the result on stdout, progress on stderr
    return settings


def test_every_row_arrives_with_its_batch_ids_and_statuses(migrated):
    want = json.loads((FIXTURES / "home-v2.expected.json").read_text())
    with warehouse.reader(migrated) as con:
        for table in ("batch", "response", "reported_total", "quarantine", "validation_result"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == want[table]  # noqa: S608 - table names come from the snapshot or the test itself
        statuses = dict(con.execute("SELECT status, count(*) FROM batch GROUP BY 1").fetchall())
        assert statuses == want["statuses"]
        assert con.execute("SELECT count(*) FROM batch WHERE superseded_by_batch_id IS NOT NULL"
                           ).fetchone()[0] == want["superseded_by"] > 0
        assert con.execute("SELECT sum(score) FROM response").fetchone()[0] == pytest.approx(
            want["response_sum"])
        assert con.execute("SELECT max(batch_id) FROM batch").fetchone()[0] == want["max_batch_id"]
    with warehouse.writer(migrated) as con:  # new batches continue the numbering
        assert warehouse.allocate_batch_ids(con, 1) == [want["max_batch_id"] + 1]


def test_the_published_marts_are_published_again(migrated):
    want = json.loads((FIXTURES / "home-v2.expected.json").read_text())
    snap = published.current(migrated)
    assert snap is not None and snap.tables == want["published_tables"]
    info = dict(published.query_snapshot(snap, "SELECT key, value FROM publish_info",
                                         settings=migrated))
    assert info["migrated_from"] == want["published_version"]
    n = published.query_snapshot(snap, "SELECT count(*) FROM episode_measure", settings=migrated)
    assert n[0][0] == want["published_tables"]["episode_measure"]


def test_the_old_files_are_kept_aside_and_a_second_migration_is_refused(migrated):
    assert (migrated.home_dir / "warehouse.duckdb.migrated").exists()
    assert (migrated.home_dir / "published.migrated" / "CURRENT").exists()
    assert not migrated.legacy_warehouse_path.exists()
    again = _tandem(migrated, "migrate")
    assert again.returncode == 2 and "no schema-v2 warehouse" in again.stderr


def test_the_migrated_lake_ingests_and_aggregates_on(migrated, tmp_path):
    """The same pseudonyms (the key is checked), a corrected re-send, the aggregate."""
    from tests.conftest import HEADER, canonical_rows

    contracts = [yaml.safe_load(p.read_text())
                 for p in sorted((migrated.local_contracts_dir / "clinics").glob("*.yaml"))]
    canonical = [c for c in contracts if c["format"] == "canonical_csv" and "ORS" in
                 c["instruments"]]
    assert canonical, "the fixture has a canonical-CSV clinic with ORS"
    clinic, therapist = canonical[0]["clinic_id"], canonical[0]["therapists"][0]
    f = tmp_path / clinic / "late-2026-06.csv"
    f.parent.mkdir()
    f.write_text(HEADER + canonical_rows("NEW-CLIENT-1", therapist, "2026-06-01", 1, "ORS",
                                         [4, 5, 6, 7], clinic))
    proc = _tandem(migrated, "ingest", "--as-of", "2026-06-30", str(f))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _tandem(migrated, "aggregate", "--as-of", "2026-06-30")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with warehouse.reader(migrated) as con:
        mode = dict(con.execute("SELECT key, value FROM agg_state").fetchall())["mode"]
    assert mode == "full"  # the first aggregate after a migration builds the state
