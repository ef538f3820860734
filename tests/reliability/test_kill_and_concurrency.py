"""Kill -9 in the middle of a load, a full disk, and two ingests at once (real processes).

Every scenario runs a child process (``ingest_child``) that loads a small file, then a
large one (32,000 rows) during which the fault strikes: SIGKILL at a named point of the
load, SIGKILL from outside after a delay, an error inside the open transaction, or a
file-size limit (a full disk). Afterwards the warehouse must hold all of the large file's
batch or none of it, the earlier batch untouched, and a re-run must complete the load.
Three ingests at once (no lock: DuckLake's optimistic commits, retried) must load every file
exactly once, and two processes creating a new lake at once must both get it.

The scenarios are slow to start (each child imports Great Expectations), so the module
runs them all at once in a small pool and the tests check one scenario each.
"""

from __future__ import annotations

import hashlib
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tandem.core.settings import Settings
from tests.conftest import CLINIC_CONTRACT, HEADER, canonical_rows
from tests.reliability import helpers as h

BIG_CLIENTS = 8_000  # x 4 ORS items = 32,000 rows (1.4 MB), about 2 s to load on 2 cores
HOOK_POINTS = {  # point -> what the warehouse holds after a kill there
    "after_lock": "none",
    "after_insert_response": "none",
    "after_insert_batch": "none",
    "before_commit": "none",
    "after_commit": "all",
}
KILL_DELAYS = (0.3, 1.0, 1.8)  # seconds after the large load starts
# Bytes any one file may reach: the received copy of the large file (1.4 MB) is the first
# file it writes. (The lake's own files are smaller than their input, so an error in the
# open transaction stands in for a full disk there: RAISE_POINTS.)
DISK_LIMITS = {"received_copy": 500_000}
RAISE_POINTS = ("after_insert_response", "before_commit")


def _home(base: Path, name: str) -> Settings:
    settings = Settings(home=base / name)
    settings.ensure_dirs()
    (settings.local_contracts_dir / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    return settings


def _files(base: Path) -> dict[str, Path]:
    files = {
        "small": HEADER + canonical_rows("NS-S00001", "T01", "2026-01-05", 1, "ORS", [4, 5, 6, 6]),
        "other": HEADER + canonical_rows("NS-S00002", "T02", "2026-01-06", 1, "SRS", [9, 9, 8, 9]),
        "big": HEADER + "".join(
            canonical_rows(f"NS-{k:06d}", f"T0{1 + k % 2}", "2026-01-05", 1 + k % 3, "ORS",
                           [4, 5, 6, 6]) for k in range(BIG_CLIENTS)
        ),
        "big2": HEADER + "".join(
            canonical_rows(f"NS-{k:06d}", f"T0{1 + k % 2}", "2026-02-05", 4, "SRS",
                           [9, 8, 9, 9]) for k in range(BIG_CLIENTS // 2)
        ),
    }
    out = {}
    for name, text in files.items():
        out[name] = base / f"northside_{name}.csv"
        out[name].write_text(text)
    return out


def _hook(base: Path, files: dict[str, Path], point: str) -> dict:
    s = _home(base, f"hook-{point}")
    outcome = h.run_child(s, files["small"], files["big"], TANDEM_TEST_FAULT=point)
    return {"settings": s, "outcome": outcome}


def _timed(base: Path, files: dict[str, Path], delay: float) -> dict:
    s = _home(base, f"timed-{delay}")
    outcome = h.run_child(s, files["small"], files["big"], kill_after=delay)
    return {"settings": s, "outcome": outcome}


def _disk(base: Path, files: dict[str, Path], name: str) -> dict:
    s = _home(base, f"disk-{name}")
    outcome = h.run_child(s, files["small"], files["big"],
                          TANDEM_TEST_FSIZE=str(DISK_LIMITS[name]))
    return {"settings": s, "outcome": outcome}


def _raise(base: Path, files: dict[str, Path], point: str) -> dict:
    s = _home(base, f"raise-{point}")
    outcome = h.run_child(s, files["small"], files["big"], TANDEM_TEST_FAULT=f"{point}:raise")
    return {"settings": s, "outcome": outcome}


def _concurrent(base: Path, files: dict[str, Path]) -> dict:
    """Three ingests at once into one warehouse: two large files, and one of them again."""
    s = _home(base, "concurrent")
    go = base / "go-concurrent"
    procs = [h.start_child(s, files[a], files[b], TANDEM_TEST_GO=str(go))
             for a, b in (("small", "big"), ("other", "big2"), ("other", "big"))]
    try:
        for p in procs:
            h.wait_ready(p)
        go.touch()
        return {"settings": s, "outcomes": [h.finish(p) for p in procs]}
    finally:
        for p in procs:  # never leave a child waiting for the go file
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("faults")
    files = _files(base)
    jobs = {("concurrent",): (_concurrent, base, files)}
    jobs |= {("hook", p): (_hook, base, files, p) for p in HOOK_POINTS}
    jobs |= {("timed", d): (_timed, base, files, d) for d in KILL_DELAYS}
    jobs |= {("disk", n): (_disk, base, files, n) for n in DISK_LIMITS}
    jobs |= {("raise", p): (_raise, base, files, p) for p in RAISE_POINTS}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {k: pool.submit(fn, *args) for k, (fn, *args) in jobs.items()}
        out = {k: f.result() for k, f in futures.items()}
    out["files"] = files
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rerun_completes(settings: Settings, files: dict[str, Path]) -> None:
    """Re-running the delivery afterwards leaves exactly one loaded copy of it."""
    result = h.Pipeline(settings).load(files["big"])
    assert result.status in ("loaded", "duplicate_file"), result
    state = h.warehouse_state(settings)
    loaded = [b for b in state["batches"] if b[2] == _sha(files["big"]) and b[1] == "loaded"]
    assert len(loaded) == 1
    assert state["responses"][loaded[0][0]] == 4 * BIG_CLIENTS


def _earlier_batch_intact(settings: Settings, files: dict[str, Path]) -> None:
    assert h.assert_all_or_nothing(settings, _sha(files["small"])) == "all"


@pytest.mark.parametrize("point", list(HOOK_POINTS))
def test_kill_at_a_named_point_leaves_all_or_nothing_and_a_rerun_completes(scenarios, point):
    sc = scenarios[("hook", point)]
    assert sc["outcome"].returncode == -signal.SIGKILL, sc["outcome"].stderr[-2000:]
    s, files = sc["settings"], scenarios["files"]
    _earlier_batch_intact(s, files)
    assert h.assert_all_or_nothing(s, _sha(files["big"])) == HOOK_POINTS[point]
    _rerun_completes(s, files)


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_kill_after_a_delay_leaves_all_or_nothing_and_a_rerun_completes(scenarios, delay):
    sc = scenarios[("timed", delay)]
    s, files = sc["settings"], scenarios["files"]
    assert sc["outcome"].killed_by_us or sc["outcome"].returncode == 0
    _earlier_batch_intact(s, files)
    h.assert_all_or_nothing(s, _sha(files["big"]))
    _rerun_completes(s, files)


@pytest.mark.parametrize("where", list(DISK_LIMITS))
def test_a_full_disk_fails_the_load_clearly_and_a_rerun_completes(scenarios, where):
    sc = scenarios[("disk", where)]
    out, s, files = sc["outcome"], sc["settings"], scenarios["files"]
    assert out.returncode == 1 and out.result is None
    assert "File too large" in out.stderr  # the error names the cause (EFBIG)
    _earlier_batch_intact(s, files)
    assert h.assert_all_or_nothing(s, _sha(files["big"])) == "none"
    assert not list(s.received_dir.rglob("*.tmp"))  # no half-copied file left behind
    _rerun_completes(s, files)


@pytest.mark.parametrize("point", RAISE_POINTS)
def test_an_error_inside_the_transaction_leaves_nothing_and_a_rerun_completes(scenarios, point):
    sc = scenarios[("raise", point)]
    out, s, files = sc["outcome"], sc["settings"], scenarios["files"]
    assert out.returncode == 1 and out.result is None
    assert "FaultInjected" in out.stderr
    _earlier_batch_intact(s, files)
    assert h.assert_all_or_nothing(s, _sha(files["big"])) == "none"
    _rerun_completes(s, files)


def test_three_ingests_at_once_all_complete_exactly_once(scenarios):
    sc = scenarios[("concurrent",)]
    s, files = sc["settings"], scenarios["files"]
    results = [o.result for o in sc["outcomes"]]
    assert all(o.returncode == 0 for o in sc["outcomes"]), [o.stderr[-1500:]
                                                             for o in sc["outcomes"]]
    by_name = sorted((r["source_name"], r["status"]) for r in results)
    assert by_name.count(("northside_big2.csv", "loaded")) == 1
    assert sorted(st for n, st in by_name if n == "northside_big.csv") == [
        "duplicate_file", "loaded"]
    state = h.warehouse_state(s)
    ids = [b[0] for b in state["batches"]]
    assert len(ids) == len(set(ids)) == 6  # small, big2, other and big each loaded + duplicate
    for name in ("small", "other", "big", "big2"):
        assert h.assert_all_or_nothing(s, _sha(files[name])) == "all"
    assert sum(state["responses"].values()) == 4 + 4 + 4 * BIG_CLIENTS + 4 * (BIG_CLIENTS // 2)


def test_two_processes_creating_a_new_lake_at_once_both_get_it(tmp_path):
    """A brand-new catalog is created once (under a file lock held only while creating it);
    the other process waits for it, then attaches: no 'database is locked', no second lake."""
    import subprocess
    import sys

    settings = Settings(home=tmp_path / "new")
    code = ("import sys; from tandem.core import warehouse; from tandem.core.settings import "
            "Settings; s = Settings(home=sys.argv[1]); c = warehouse.connect(s); "
            "print(c.execute('SELECT count(*) FROM batch').fetchone()[0]); c.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(settings.home_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-1500:] for _, e in outs]
    assert [o.strip() for o, _ in outs] == ["0", "0", "0"]
    from tandem.core import warehouse

    with warehouse.reader(settings) as con:
        assert con.execute("SELECT count(*) FROM schema_info WHERE key = 'schema_version'"
                           ).fetchone()[0] == 1  # the tables were made once
