"""Shared helpers for the reliability and security tests: a pipeline, children, checks."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tandem.core.settings import Settings
from tests.conftest import REPO_ROOT

AS_OF = dt.date(2026, 6, 30)
CHILD = "tests.reliability.ingest_child"


@dataclass
class Pipeline:
    """``tandem.pipeline.ingest.process_file`` on one TANDEM_HOME, contracts and key loaded once."""

    settings: Settings
    key: bytes = b"test-only-key"
    contracts: dict = field(default_factory=dict)
    instruments: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from tandem.core.contracts import load_clinic_contracts, load_instruments

        self.contracts = load_clinic_contracts(self.settings)
        self.instruments = load_instruments(self.settings)

    def load(self, path: Path, clinic: str | None = None):
        from tandem.pipeline.ingest import IngestRun, process_file

        return process_file(path, IngestRun(
            settings=self.settings, contracts=self.contracts, instruments=self.instruments,
            key=self.key, clinic_hint=clinic, as_of=AS_OF))


def install_contracts(settings: Settings, corpus: Path) -> None:
    """The generated clinics' contracts become this home's site contracts."""
    target = settings.local_contracts_dir / "clinics"
    target.mkdir(parents=True, exist_ok=True)
    for contract in (corpus / "data_contracts" / "clinics").glob("*.yaml"):
        shutil.copyfile(contract, target / contract.name)


def warehouse_state(settings: Settings) -> dict:
    """Counts per table and the batch rows, as a reader sees them (one snapshot)."""
    from tandem.core import warehouse

    with warehouse.reader(settings) as con:
        batches = con.execute(
            "SELECT batch_id, status, content_sha256, rows_received, rows_loaded, "
            "rows_quarantined, rows_duplicate FROM batch ORDER BY batch_id"
        ).fetchall()
        per_batch = dict(con.execute(
            "SELECT batch_id, count(*) FROM response GROUP BY batch_id").fetchall())
        # Canonical rows set aside: each (source row, instrument) unit counts its rows once.
        quarantined = dict(con.execute(
            "SELECT batch_id, sum(coalesce(n, 1)) FROM (SELECT DISTINCT batch_id, source_row, "
            "instrument, rows_set_aside AS n FROM quarantine) GROUP BY batch_id"
        ).fetchall())
        validated = {r[0] for r in con.execute(
            "SELECT DISTINCT batch_id FROM validation_result").fetchall()}
    return {"batches": batches, "responses": per_batch, "quarantined": quarantined,
            "validated": validated}


def assert_all_or_nothing(settings: Settings, sha256: str) -> str:
    """The file's batch is wholly in the warehouse or wholly absent; says which.

    Batches that loaded nothing by design (``duplicate_file``, ``failed``) are ignored.
    """
    state = warehouse_state(settings)
    mine = [b for b in state["batches"] if b[2] == sha256 and b[1] in ("loaded", "superseded")]
    known = {b[0] for b in state["batches"]}
    # Nothing in any table belongs to a batch without a batch record.
    assert set(state["responses"]) <= known, state
    assert set(state["quarantined"]) <= known, state
    assert state["validated"] <= known, state
    if not mine:
        return "none"
    assert len(mine) == 1, mine
    batch_id, status, _, received, loaded, quarantined, duplicate = mine[0]
    assert status == "loaded", mine
    assert received == loaded + quarantined + duplicate
    assert state["responses"].get(batch_id, 0) == loaded
    return "all"


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(
        TANDEM_HOME=str(settings.home_dir), TANDEM_PSEUDONYM_KEY="test-only-key",
        PYTHONPATH=str(REPO_ROOT), GX_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
    )
    env.update(extra)
    return env


@dataclass
class ChildOutcome:
    returncode: int
    stdout: str
    stderr: str
    killed_by_us: bool = False

    @property
    def result(self) -> dict | None:
        for line in self.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line.removeprefix("RESULT "))
        return None


def start_child(settings: Settings, *paths: Path, **env: str) -> subprocess.Popen:
    # stderr to a file: a chatty child can never block on a full pipe
    err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - closed in finish
    proc = subprocess.Popen(
        [sys.executable, "-m", CHILD, *map(str, paths)], cwd=REPO_ROOT,
        env=child_env(settings, **env), stdout=subprocess.PIPE, stderr=err, text=True,
    )
    proc.stderr_file = err  # type: ignore[attr-defined]
    return proc


def _stderr(proc: subprocess.Popen, err: str | None) -> str:
    f = getattr(proc, "stderr_file", None)
    if f is None:
        return err or ""
    f.seek(0)
    text = f.read()
    f.close()
    return text


def wait_ready(proc: subprocess.Popen, timeout: float = 180) -> None:
    """Block until the child printed READY (imports and GX warm-up done)."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child exited before READY: {_stderr(proc, None)[-2000:]}")
    proc.kill()
    proc.wait()
    raise AssertionError("child not READY in time")


def finish(proc: subprocess.Popen, timeout: float = 180, kill_after: float | None = None
           ) -> ChildOutcome:
    killed = False
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child hung; killed: {_stderr(proc, err)[-2000:]}") from None
    return ChildOutcome(proc.returncode, out, _stderr(proc, err), killed)


def run_child(settings: Settings, *paths: Path, kill_after: float | None = None,
              **env: str) -> ChildOutcome:
    proc = start_child(settings, *paths, **env)
    wait_ready(proc)
    return finish(proc, kill_after=kill_after)


def scan_bytes(paths: list[Path], needles: set[bytes]) -> dict[str, list[str]]:
    """Which needles occur in which files (byte search, whole files)."""
    hits: dict[str, list[str]] = {}
    for p in paths:
        try:
            data = p.read_bytes()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            continue
        found = [n.decode(errors="replace") for n in needles if n in data]
        if found:
            hits[str(p)] = sorted(found)[:5]
    return hits


def open_snapshot_tables(settings: Settings, snap) -> dict[str, int]:  # noqa: ANN001
    """Rows of every table of a publication, read at its snapshot (but the log of
    publications, which a restore adds to)."""
    from tandem.core import published

    with published.reading(snap, settings) as con:
        names = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'marts'").fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0]  # noqa: S608 - table names come from the snapshot or the test itself
                for n in names if n != published.PUBLICATION}


def generate_corpus(out: Path, seed: int = 3, **faults: float) -> Path:
    """A small data set in all four formats (one clinic each) from ``tandem.synth``."""
    from dataclasses import replace

    from tandem.synth import FaultRates, GenerateOptions, generate

    rates = replace(FaultRates(), **faults) if faults else FaultRates()
    generate(GenerateOptions(out=out, seed=seed, clinics=4, clients_per_clinic=6, as_of=AS_OF,
                             faults=rates))
    return out
