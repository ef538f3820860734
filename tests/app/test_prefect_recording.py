"""With a Prefect server configured, ``tandem ingest`` and ``tandem aggregate`` record their
runs there (flow run, logs, events) without running Prefect in the command; with the server
configured but down they refuse before touching anything (issue 15's target: the run still
appears in Prefect)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT, canonical_rows
from tests.flows.servers import free_port, prefect_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        yield url


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "data_contracts" / "clinics").mkdir(parents=True)
    (home / "data_contracts" / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    return home


def tandem(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_"))}
    full.update(TANDEM_HOME=str(home), TANDEM_PSEUDONYM_KEY="test-only-key",
                TANDEM_MIN_CELL_SIZE="1", PYTHONPATH=str(REPO_ROOT), COLUMNS="80", **env)
    return subprocess.run([sys.executable, "-m", "tandem.app.cli", *args], env=full,
                          capture_output=True, text=True, timeout=300, cwd=home.parent)


def a_file(folder: Path, name: str = "northside_2026-01.csv") -> Path:
    path = folder / name
    path.write_text(HEADER + canonical_rows("C1", "T01", "2026-01-05", 1, "ORS", [5, 6, 7, 8]))
    return path


def runs_of(api: str, flow: str) -> list[dict]:
    r = httpx.post(f"{api}/flow_runs/filter", timeout=10, json={
        "flows": {"name": {"any_": [flow]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 50})
    r.raise_for_status()
    return r.json()


def events(api: str, prefix: str, run_id: str) -> list[dict]:
    deadline = time.monotonic() + 30
    while True:
        r = httpx.post(f"{api}/events/filter", timeout=10, json={
            "filter": {"event": {"prefix": [prefix]},
                       "related": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 50})
        found = r.json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_ingest_and_aggregate_are_recorded_as_flow_runs(home, server, tmp_path):
    proc = tandem(home, "ingest", str(a_file(tmp_path)), PREFECT_API_URL=server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = [r for r in runs_of(server, "ingest")
              if r["parameters"]["paths"] == [str(tmp_path / "northside_2026-01.csv")]]
    assert run["state_type"] == "COMPLETED" and run["start_time"] and run["end_time"]
    assert f"/runs/flow-run/{run['id']}" in " ".join(proc.stdout.split()).replace(" ", "")
    logs = httpx.post(f"{server}/logs/filter", timeout=10, json={
        "logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    assert any("northside_2026-01.csv: loaded" in log["message"] for log in logs)
    (loaded,) = events(server, "tandem.batch.", run["id"])
    assert loaded["event"] == "tandem.batch.loaded"
    assert loaded["resource"]["tandem.clinic"] == "northside"
    assert loaded["payload"]["rows_loaded"] == 4

    proc = tandem(home, "aggregate", "--as-of", "2026-06-30", PREFECT_API_URL=server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = runs_of(server, "aggregate")[0]
    assert run["state_type"] == "COMPLETED" and run["parameters"]["as_of"] == "2026-06-30"
    (published,) = events(server, "tandem.marts.published", run["id"])
    assert published["payload"]["version"] in proc.stdout


def test_a_failed_file_still_completes_the_run_with_its_reason(home, server, tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_text("clinic_id,client_id\nnorthside,C1\n")
    proc = tandem(home, "ingest", "--clinic", "northside", str(bad), PREFECT_API_URL=server)
    assert proc.returncode == 3
    (run,) = [r for r in runs_of(server, "ingest") if r["parameters"]["paths"] == [str(bad)]]
    assert run["state_type"] == "COMPLETED"
    assert run["state"]["message"] == "1 file failed; each is recorded with its reason"
    (failed,) = events(server, "tandem.batch.", run["id"])
    assert failed["event"] == "tandem.batch.failed" and failed["payload"]["reason"]


def test_a_server_named_by_the_prefect_profile_is_used_too(home, server, tmp_path):
    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    (prefect_home / "profiles.toml").write_text(
        f'active = "site"\n\n[profiles.site]\nPREFECT_API_URL = "{server}"\n')
    good = a_file(tmp_path, "northside_2026-02.csv")
    proc = tandem(home, "ingest", str(good), PREFECT_HOME=str(prefect_home))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r for r in runs_of(server, "ingest") if r["parameters"]["paths"] == [str(good)]]


def test_a_configured_server_that_is_down_stops_the_command_before_any_work(home, tmp_path):
    down = f"http://127.0.0.1:{free_port()}/api"
    proc = tandem(home, "ingest", str(a_file(tmp_path)), PREFECT_API_URL=down)
    assert proc.returncode == 5
    message = " ".join(proc.stderr.split())
    assert f"Error: the Prefect server at {down} does not answer" in message
    assert "unset PREFECT_API_URL to run without recording the run in Prefect; nothing was " \
           "ingested." in message
    assert tandem(home, "aggregate").returncode == 4  # the warehouse holds no batch
