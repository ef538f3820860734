"""Data at rest (issue 17, item 11): everything Tandem writes is private to the service
user (umask 077, older homes tightened)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tandem.core.runtime import prepare_environment
from tandem.core.settings import Settings
from tandem.pipeline import intake
from tandem.pipeline.ingest import IngestRun, process_files
from tests.conftest import HEADER, canonical_rows
from tests.reliability.helpers import AS_OF


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def default_umask():
    """The usual login umask (022) for the test, whatever the process had before."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _csv(path: Path, client: str = "C1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + canonical_rows(client, "T01", "2025-03-02", 1, "ORS", [5, 6, 7, 8]))
    return path


def test_what_tandem_writes_is_private_to_its_user(tandem_home, tmp_path, default_umask):
    """Before: received/ 0755, kept files 0644, the warehouse 0644 (world-readable raw
    client ids and pseudonymised health data)."""
    settings = prepare_environment(Settings())
    src = _csv(tmp_path / "northside" / "feb.csv")
    [result] = process_files([src], IngestRun.load(settings, as_of=AS_OF))
    assert result.status == "loaded"
    kept = [p for p in settings.received_dir.rglob("*")]
    assert kept
    for p in [settings.received_dir, *kept, settings.lake_dir,
              settings.lake_dir / "catalog.sqlite", settings.secrets_dir,
              settings.validation_dir]:
        assert _mode(p) & 0o077 == 0, f"{p} is {oct(_mode(p))}"
    for p in settings.validation_dir.rglob("*"):
        assert _mode(p) & 0o077 == 0, f"{p} is {oct(_mode(p))}"


def test_an_older_home_left_open_to_others_is_tightened(tandem_home, default_umask):
    settings = Settings()
    old = settings.received_dir / "northside"
    old.mkdir(parents=True)
    (old / ("a" * 64 + ".csv")).write_text("x")
    os.chmod(settings.received_dir, 0o755)
    os.chmod(old, 0o755)
    os.chmod(old / ("a" * 64 + ".csv"), 0o644)
    done = intake.intake_dir(settings, "done", "northside") / "t1"
    done.mkdir(parents=True)
    (done / "feb.csv").write_text("x")
    os.chmod(done / "feb.csv", 0o644)
    os.chmod(intake.intake_dir(settings, "done").parent, 0o755)
    prepare_environment(settings)
    for p in (settings.received_dir, old, old / ("a" * 64 + ".csv"), done / "feb.csv"):
        assert _mode(p) & 0o077 == 0, f"{p} is {oct(_mode(p))}"
