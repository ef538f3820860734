"""Shared fixtures: a fresh TANDEM_HOME per test, with a small clinic contract."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports Prefect or GX: keep their state out of the user's home, quietly.
_session_tmp = Path(tempfile.mkdtemp(prefix="tandem-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_session_tmp / "prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ["GX_ANALYTICS_ENABLED"] = "false"

import signal  # noqa: E402

import pytest  # noqa: E402


def _terminate(signum, frame):  # noqa: ARG001
    """SIGTERM ends the run like Ctrl+C: fixtures tear down the servers they started."""
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _terminate)

from tandem.core.settings import Settings  # noqa: E402

# The checkout the tests run from (subprocesses start here).
REPO_ROOT = Path(__file__).resolve().parent.parent

CLINIC_CONTRACT = """\
clinic_id: northside
name: Northside Counselling
format: canonical_csv
started_on: 2024-01-01
instruments: [ORS, SRS, COLLABORATE, PRACTICE]
therapists: [T01, T02]
"""

HEADER = "clinic_id,client_id,therapist_id,session_date,session_number,instrument,item,score\n"


def canonical_rows(
    client: str,
    therapist: str,
    date: str,
    session: int,
    instrument: str,
    scores: list[float],
    clinic: str = "northside",
) -> str:
    """Canonical CSV lines for one administration, items numbered from 1."""
    return "".join(
        f"{clinic},{client},{therapist},{date},{session},{instrument},{i},{s}\n"
        for i, s in enumerate(scores, start=1)
    )


@pytest.fixture
def tandem_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    home = tmp_path / "home"
    monkeypatch.setenv("TANDEM_HOME", str(home))
    monkeypatch.setenv("TANDEM_PSEUDONYM_KEY", "test-only-key")
    settings = Settings()
    settings.ensure_dirs()
    (settings.local_contracts_dir / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    return settings


@pytest.fixture(scope="session")
def prefect_server():
    """A real, temporary Prefect server (SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
