"""The scaled-out topology, for real: a DuckLake whose catalog is a PostgreSQL server, the
Prefect server on the same PostgreSQL, ``tandem serve --work-pool`` and three ``tandem
worker`` processes (docs/scaling.md).

Over 40 files of four clinics (all four formats, with duplicates and corrected re-sends) are
dropped at once; while they load, one worker's flow run is killed with SIGKILL just before
its commit together with the worker itself, PostgreSQL is restarted, and a reader queries
the warehouse and the published marts throughout. Afterwards: every file loaded exactly
once, accounting holds per batch, the reader never saw a half-written state, and the
published marts equal those of the embedded, single-process run on the same files (the same
rows, not just counts). Then two workers load corrected re-sends of one file at the same
moment: exactly one version is current.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tandem.core import published, warehouse
from tandem.core.settings import Settings
from tests import postgres
from tests.app.conftest import (
    PrefectServer,
    Served,
    _kill_group,
    free_port,
    start_serve,
    stop_serve,
    wait_for,
    wait_serving,
)
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not postgres.available(),
                                reason="PostgreSQL is not installed (.ci/run installs it)")

KEY = "scaled-out-test-key"
TODAY = dt.date.today()
# Columns that name batches: the two runs number their batches differently.
LINEAGE = {"batch_ids"}


def _generate(out: Path) -> dict:
    from dataclasses import replace

    from tandem.synth import FaultRates, GenerateOptions, generate

    rates = replace(FaultRates(), corrected_file=0.12, duplicate_file=0.08)
    generate(GenerateOptions(out=out, seed=29, clinics=4, clients_per_clinic=8, as_of=TODAY,
                             faults=rates))
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _install_contracts(gen: Path, settings: Settings) -> None:
    target = settings.local_contracts_dir / "clinics"
    target.mkdir(parents=True, exist_ok=True)
    for path in (gen / "data_contracts" / "clinics").glob("*.yaml"):
        (target / path.name).write_bytes(path.read_bytes())


class Cluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.pg = postgres.PostgresServer(base / "pg")
        self.prefect: PrefectServer | None = None
        self.served: Served | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.settings: Settings | None = None
        self.env: dict[str, str] = {}

    def start(self) -> None:
        self.pg.start()
        self.pg.create_database("lake")
        self.pg.create_database("prefect")
        self.settings = Settings(home=self.base / "home", catalog_url=self.pg.url("lake"),
                                 pseudonym_key=KEY)
        self.settings.ensure_dirs()
        self.prefect = PrefectServer(self.base / "prefect-home", free_port(),
                                     self.base / "prefect.log",
                                     database_url=self.pg.url("prefect", "postgresql+asyncpg"))
        self.prefect.start(timeout=300)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_"))},
            "TANDEM_HOME": str(self.settings.home_dir),
            "TANDEM_CATALOG_URL": self.pg.url("lake"),
            "TANDEM_PSEUDONYM_KEY": KEY,
            "TANDEM_MIN_CELL_SIZE": "1",
            "PREFECT_HOME": str(self.base / "prefect-client"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "TANDEM_INBOX_STABLE_SECONDS": "0.5",
            "TANDEM_INGEST_WINDOW_SECONDS": "5",
            "TANDEM_AGGREGATE_WINDOW_SECONDS": "30",
            "TANDEM_AGGREGATE_QUIET_SECONDS": "3",
            "TANDEM_AGGREGATE_MAX_WAIT_SECONDS": "60",
            "TANDEM_INTAKE_RETRY_SECONDS": "15",
        }
        self.served = start_serve(self.settings, self.env,
                                  ["--prefect-api-url", self.prefect.api_url,
                                   "--api-port", str(free_port()), "--work-pool", "tandem"],
                                  self.prefect.api_url)
        wait_serving(self.served, 300)

    def start_worker(self, name: str, **extra: str) -> None:
        env = {**self.env, "PREFECT_API_URL": self.prefect.api_url, **extra}
        log = (self.base / f"worker-{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "tandem.app.cli", "worker", "--pool", "tandem",
             "--limit", "2", "--name", name],
            env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        for proc in self.workers.values():
            _kill_group(proc.pid, signal.SIGTERM)
        for proc in self.workers.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            _kill_group(proc.pid, signal.SIGKILL)
        # flow-run processes run in sessions of their own: by this test's marker
        _kill_marked(str(self.base))
        if self.served is not None:
            stop_serve(self.served)
        if self.prefect is not None:
            self.prefect.stop()
        self.pg.stop()

    def logs(self) -> str:
        parts = [self.served.logs() if self.served else ""]
        for f in sorted(self.base.glob("worker-*.log")):
            parts.append(f"==== {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(parts)


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment names this test's folder."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            continue


def drop(settings: Settings, path: Path, clinic: str) -> None:
    folder = settings.inbox_dir / clinic
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (path.name + ".part")
    part.write_bytes(path.read_bytes())
    os.rename(part, folder / path.name)


def batches(settings: Settings) -> list[dict]:
    with warehouse.reader(settings) as con:
        cur = con.execute("SELECT batch_id, clinic_id, source_name, content_sha256, status, "
                          "rows_received, rows_loaded, rows_quarantined, rows_duplicate "
                          "FROM batch ORDER BY batch_id")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def marts(settings: Settings) -> dict[str, pl.DataFrame]:
    """Every published mart but the audit tables, without lineage columns, rows sorted."""
    snap = published.current(settings)
    assert snap is not None
    out = {}
    with published.reading(snap, settings) as con:
        for name in snap.tables:
            if name.startswith("audit_"):
                continue
            frame = pl.from_arrow(con.sql(f'SELECT * FROM "{name}"').to_arrow_table())  # noqa: S608 - table names come from the snapshot or the test itself
            frame = frame.drop([c for c in frame.columns if c in LINEAGE])
            out[name] = frame.sort(frame.columns, nulls_last=True)
    return out


class Reader(threading.Thread):
    """Queries the warehouse and the newest publication over and over: every batch read is
    whole (its answers with its record), every publication holds the rows it records."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.stop = threading.Event()
        self.reads = 0
        self.inconsistent: list[str] = []
        self.transient: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with warehouse.reader(self.settings) as con:
                    con.execute("BEGIN TRANSACTION")  # one snapshot for both queries
                    loaded = dict(con.execute(
                        "SELECT batch_id, rows_loaded FROM batch WHERE status = 'loaded'"
                    ).fetchall())
                    rows = dict(con.execute(
                        "SELECT batch_id, count(*) FROM (SELECT batch_id FROM response "
                        "UNION ALL SELECT batch_id FROM reported_total) GROUP BY 1").fetchall())
                    con.execute("ROLLBACK")
                half = {b: (n, rows.get(b, 0)) for b, n in loaded.items() if rows.get(b, 0) != n}
                orphans = set(rows) - set(loaded)
                if half or orphans:
                    self.inconsistent.append(f"half batches {half}, rows without a record "
                                             f"{orphans}")
                snap = published.current(self.settings)
                if snap is not None:
                    with published.reading(snap, self.settings) as con:
                        for name, n in snap.tables.items():
                            got = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # noqa: S608 - table names come from the snapshot or the test itself
                            if got != n:
                                self.inconsistent.append(f"{snap.version}.{name}: {got} != {n}")
                self.reads += 1
            except Exception as exc:  # noqa: BLE001 - PostgreSQL restarts under it
                self.transient.append(str(exc).splitlines()[0][:200])
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Cluster:
    c = Cluster(tmp_path_factory.mktemp("scaled"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    gen = tmp_path_factory.mktemp("gen") / "data"
    return gen, _generate(gen)


def test_forty_files_on_three_workers_with_faults_load_exactly_once(cluster, generated):
    gen, manifest = generated
    settings = cluster.settings
    _install_contracts(gen, settings)
    files = sorted((gen / "files").rglob("*.*"))
    by_clinic = Counter(f.parent.name for f in files)
    assert len(files) >= 40 and len(by_clinic) == 4, by_clinic

    pids = cluster.base / "w3.pids"
    # w3 starts alone: with all three polling, w1 and w2 could take every flow run before
    # w3 is up (seen in CI), and the fault would never fire
    cluster.start_worker("w3", TANDEM_FAULT_POINT=f"before_commit:pidfile={pids},"
                                                  "before_commit:sleep=60")
    reader = Reader(settings)
    reader.start()
    try:
        for f in files:  # all at once, in name order per clinic
            drop(settings, f, f.parent.name)
        # a worker dies mid-commit: its flow run (paused before COMMIT) and the worker itself
        wait_for(lambda: pids.exists() and pids.read_text().strip(), 600,
                 "worker w3 to reach a commit", cluster.served)
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        victim = int(pids.read_text().split()[0])
        os.kill(victim, signal.SIGKILL)
        _kill_group(cluster.workers["w3"].pid, signal.SIGKILL)
        # PostgreSQL restarts while the others load
        time.sleep(2)
        cluster.pg.restart()

        def settled() -> bool:
            seen = {(b["clinic_id"], b["source_name"]) for b in batches(settings)}
            waiting = list((settings.home_dir / "intake").rglob("*.*"))
            waiting = [p for p in waiting if "done" not in p.parts and not p.name.startswith(".")]
            return seen >= {(f.parent.name, f.name) for f in files} and not waiting

        wait_for(settled, 900, "every file to be recorded", every=3)
        wait_for(lambda: not published.marts_lag(settings).behind, 600,
                 "the marts to include every batch", every=3)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        reader.stop.set()
        reader.join(30)

    got = batches(settings)
    # exactly once: a file's bytes are loaded at most once, every batch accounts for its rows
    loaded = Counter((b["clinic_id"], b["content_sha256"]) for b in got
                     if b["status"] in ("loaded", "superseded") and b["rows_loaded"])
    assert max(loaded.values()) == 1, loaded.most_common(3)
    for b in got:
        if b["status"] in ("loaded", "superseded") and b["rows_received"]:
            assert b["rows_received"] == (b["rows_loaded"] + b["rows_quarantined"]
                                          + b["rows_duplicate"]), b
    with warehouse.reader(settings) as con:
        dup = con.execute(
            "SELECT count(*) FROM (SELECT clinic_id, client_key, instrument, session_number, "
            "item FROM response GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        ids = [r[0] for r in con.execute("SELECT batch_id FROM batch").fetchall()]
    assert dup == 0 and len(ids) == len(set(ids))
    # the killed run and the restart left nothing behind, and the reader never saw a half
    assert reader.reads > 10 and reader.inconsistent == [], reader.inconsistent[:5]

    # the same files, embedded and single-process: the same marts
    from tandem.pipeline.aggregate import run_aggregate
    from tandem.pipeline.ingest import IngestRun, process_files

    embedded = Settings(home=cluster.base / "embedded", pseudonym_key=KEY, min_cell_size=1)
    embedded.ensure_dirs()
    _install_contracts(gen, embedded)
    for clinic in sorted(by_clinic):
        mine = [f for f in files if f.parent.name == clinic]
        process_files(mine, IngestRun.load(embedded, clinic_hint=clinic, as_of=TODAY))
    run_aggregate(embedded, TODAY)
    served_marts, embedded_marts = marts(settings), marts(embedded)
    assert served_marts.keys() == embedded_marts.keys()
    for name, frame in embedded_marts.items():  # the same rows (floats to rounding)
        assert_frame_equal(served_marts[name], frame, check_exact=False, rel_tol=1e-9,
                           abs_tol=1e-9, check_dtypes=True)


def test_two_workers_load_corrected_re_sends_of_one_file_at_once(cluster, generated, tmp_path):
    gen, _ = generated
    settings = cluster.settings
    api = cluster.prefect.api_url
    loaded = [b for b in batches(settings) if b["status"] == "loaded" and b["rows_loaded"]]
    original = src = None
    for b in loaded:  # a canonical CSV delivery (its rows are easy to correct)
        path = next((gen / "files").rglob(b["source_name"]))
        if "_corrected" not in path.stem and path.read_text(errors="replace").startswith(
                "clinic_id,client_id"):
            original, src = b, path
            break
    assert original is not None and src is not None
    stem = src.stem
    head, first, *rest = src.read_text().splitlines(keepends=True)
    copies = []
    for score, suffix in (("0", "corrected"), ("1", "corrected2")):
        fixed = first.rstrip("\r\n").rsplit(",", 1)[0] + f",{score}\n"
        path = tmp_path / f"{stem}_{suffix}.csv"
        path.write_text(head + fixed + "".join(rest))
        copies.append(path)
    dep = httpx.get(f"{api}/deployments/name/ingest/manual", timeout=30).json()["id"]
    runs = [httpx.post(f"{api}/deployments/{dep}/create_flow_run", timeout=30, json={
        "parameters": {"paths": [str(p)], "clinic_id": original["clinic_id"],
                       "trigger": "cli"}}).json()["id"] for p in copies]

    def done() -> bool:
        states = [httpx.get(f"{api}/flow_runs/{r}", timeout=30).json()["state"]["type"]
                  for r in runs]
        assert not set(states) & {"FAILED", "CRASHED"}, states
        return all(s == "COMPLETED" for s in states)

    wait_for(done, 600, "both re-sends to load", every=2)
    series = [b for b in batches(settings) if b["clinic_id"] == original["clinic_id"]
              and Path(b["source_name"]).stem.startswith(stem)]
    current = [b for b in series if b["status"] == "loaded"]
    assert [b["source_name"] for b in current] == [copies[1].name], series
    with warehouse.reader(settings) as con:
        ids = {b["batch_id"] for b in series}
        live = {r[0] for r in con.execute(
            "SELECT DISTINCT batch_id FROM response WHERE batch_id IN (SELECT unnest(?))",
            [sorted(ids)]).fetchall()}
    assert live == {current[0]["batch_id"]}
