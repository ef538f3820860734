"""File-to-marts latency: a 10k-row canonical CSV dropped in an inbox, until it is published.

Benchmarks issue: "file dropped to marts published, 10 k rows, with the served
deployments | baseline: ingest + aggregate called directly | reported, median of 10
drops; at most 2x the direct call plus 5 s".

* direct: in this process, ``ingest([file])`` then ``aggregate()`` (imports and one
  warm-up call done first, so it is the pure work plus Prefect's flow overhead);
* served: ``tandem serve`` in a subprocess (real Prefect server, deployments, watcher);
  the clock starts when the file is renamed into ``inbox/<clinic>/`` and stops when the
  CURRENT snapshot lists its batch as loaded. One untimed warm-up drop first.
  ``--cold`` waits between drops until every triggered run has ended, so each drop
  pays for starting both flow-run processes (the worst case); the default drops the
  next file as soon as the previous one is published (the runs of the previous drop
  may still be holding their coalescing window: the warm case).

Prints one JSON object. Usage: ``python benchmarks/bench_latency.py [--drops 10] [--cold]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONTRACT = """\
clinic_id: northside
name: Northside Counselling
format: canonical_csv
started_on: 2024-01-01
instruments: [ORS, SRS, COLLABORATE, PRACTICE]
therapists: [T01, T02]
"""
HEADER = "clinic_id,client_id,therapist_id,session_date,session_number,instrument,item,score\n"


def make_csv(drop: int, rows: int = 10_000) -> str:
    """``rows`` rows: 5 sessions x (ORS + SRS, 4 items each) for rows/40 new clients."""
    out = [HEADER]
    clients = rows // 40
    for c in range(clients):
        client = f"D{drop:03d}C{c:05d}"
        therapist = "T01" if c % 2 else "T02"
        for s in range(1, 6):
            date = f"2026-0{1 + (s - 1) // 3}-{(s * 7) % 28 + 1:02d}"
            for inst in ("ORS", "SRS"):
                for item in range(1, 5):
                    out.append(f"northside,{client},{therapist},{date},{s},{inst},{item},"
                               f"{(c + s + item) % 9 + 1}\n")
    return "".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_home(home: Path) -> None:
    (home / "data_contracts" / "clinics").mkdir(parents=True, exist_ok=True)
    (home / "data_contracts" / "clinics" / "northside.yaml").write_text(CONTRACT)


def published_names(home: Path) -> set[str]:
    """The files whose batches the newest publication holds (its audit copy)."""
    import duckdb

    from tandem.core import published
    from tandem.core.settings import Settings

    settings = Settings(home=home)
    try:
        snap = published.current(settings)
        if snap is None:
            return set()
        return {r[0] for r in published.query_snapshot(
            snap, "SELECT source_name FROM audit_batch WHERE status = 'loaded'",
            settings=settings)}
    except duckdb.Error:
        return set()


def bench_direct(root: Path, drops: int, rows: int) -> list[float]:
    home = root / "direct"
    prepare_home(home)
    os.environ.update({"TANDEM_HOME": str(home), "TANDEM_PSEUDONYM_KEY": "bench-only-key",
                       "PREFECT_HOME": str(root / "prefect-direct"),
                       "PREFECT_LOGGING_LEVEL": "ERROR", "GX_ANALYTICS_ENABLED": "false",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"})
    os.environ.pop("PREFECT_API_URL", None)
    from flows.aggregate import aggregate
    from flows.ingest import ingest

    times = []
    for i in range(drops + 1):  # the first is a warm-up
        path = root / f"direct-{i:03d}.csv"
        path.write_text(make_csv(i, rows))
        t0 = time.perf_counter()
        [result] = ingest([str(path)], "northside")
        aggregate()
        elapsed = time.perf_counter() - t0
        assert result["status"] == "loaded", result
        if i:
            times.append(elapsed)
    return times


def _runs_in_flight(api: str) -> int:
    import httpx

    body = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}}}}
    return len(httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json())


def bench_served(root: Path, drops: int, rows: int, cold: bool) -> dict:
    home = root / "served"
    prepare_home(home)
    pport, aport = free_port(), free_port()
    api = f"http://127.0.0.1:{pport}/api"
    env = {**os.environ, "TANDEM_HOME": str(home), "TANDEM_PSEUDONYM_KEY": "bench-only-key",
           "PREFECT_HOME": str(root / "prefect-served"), "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.app.cli", "serve", "--no-ui", "--prefect-port",
         str(pport), "--api-port", str(aport)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        for line in proc.stdout:
            if "Press Ctrl+C to stop." in line:
                break
        else:
            raise RuntimeError("tandem serve did not start; see " + str(home / "logs"))
        inbox = home / "inbox" / "northside"
        inbox.mkdir(parents=True, exist_ok=True)
        times = []
        for i in range(drops + 1):
            name = f"served-{i:03d}.csv"
            part = inbox / f"{name}.part"
            part.write_text(make_csv(1000 + i, rows))
            if cold:
                while _runs_in_flight(api):
                    time.sleep(0.5)
            t0 = time.perf_counter()
            os.rename(part, inbox / name)
            while name not in published_names(home):
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"{name} not published after 600 s")
                time.sleep(0.1)
            if i:
                times.append(time.perf_counter() - t0)
        return {"times": times}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--cold", action="store_true",
                        help="wait for every run to end between drops (worst case)")
    parser.add_argument("--skip-direct", type=float, default=None, metavar="SECONDS",
                        help="use this direct median instead of measuring it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as tmp:
        root = Path(tmp)
        direct = [] if args.skip_direct else bench_direct(root, args.drops, args.rows)
        direct_median = args.skip_direct or statistics.median(direct)
        served = bench_served(root, args.drops, args.rows, args.cold)["times"]
    served_median = statistics.median(served)
    budget = 2 * direct_median + 5
    print(json.dumps({
        "benchmark": "file dropped to marts published (served deployments)",
        "rows_per_file": args.rows, "drops": args.drops,
        "mode": "cold" if args.cold else "warm",
        "direct_median_s": round(direct_median, 2),
        "direct_s": [round(t, 2) for t in direct],
        "served_median_s": round(served_median, 2),
        "served_s": [round(t, 2) for t in served],
        "budget_s": round(budget, 2),
        "within_budget": served_median <= budget,
        "cpus": os.cpu_count(),
    }, indent=1))


if __name__ == "__main__":
    main()
