"""Benchmark the lake's concurrency: ingest with 1 and 2 worker processes, and the aggregate
with its per-clinic fan-out against the one-clinic-at-a-time aggregate.

    python benchmarks/bench_scaling.py --size small|reference [--catalog sqlite|postgres|both]

Data: the size's back-fill set (four clinics, one per source format; about 1 M
administrations in daily files at ``reference``). Each measured step is a fresh home and
child processes timed from outside (wall clock, and the largest process's peak RSS):

- ``ingest, 1 worker``: one process loads every clinic's files (``process_files``);
- ``ingest, 2 workers``: two processes at once, each loading two clinics' files;
- ``aggregate, one clinic at a time``: a full aggregate computing the clinics serially;
- ``aggregate, per-clinic fan-out``: the same with the clinics on 2 threads.

Each runs on the embedded SQLite catalog and on a PostgreSQL catalog (a server this script
starts and stops, tests/postgres.py). Throughput is rows loaded per second; the ratio of two
workers to one is what a second worker buys on this machine (2 cores). Prints JSON rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.data import AS_OF, backfill  # noqa: E402

INGEST = """
import json, sys, datetime as dt
from pathlib import Path
from tandem.core.settings import Settings
from tandem.pipeline.ingest import IngestRun, process_files
s = Settings()
files = [Path(p) for p in json.loads(Path(sys.argv[1]).read_text())]
by_clinic = {}
for f in files:
    by_clinic.setdefault(f.parent.name, []).append(f)
rows = 0
for clinic, mine in sorted(by_clinic.items()):
    run = IngestRun.load(s, clinic_hint=clinic, as_of=dt.date.fromisoformat(sys.argv[2]))
    rows += sum(r.rows_loaded for r in process_files(mine, run))
print(json.dumps({"rows_loaded": rows}))
"""

AGGREGATE = """
import json, sys, datetime as dt
from tandem.core.settings import Settings
from tandem.pipeline.aggregate import run_aggregate, serial_map, thread_map
s = Settings()
mapper = serial_map if sys.argv[2] == "serial" else thread_map(int(sys.argv[2]))
info = run_aggregate(s, dt.date.fromisoformat(sys.argv[1]), full=True, mapper=mapper)
print(json.dumps({"clinics": info["clinics"], "clients": info["clients_recomputed"]}))
"""


def _run(code: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(procs: list[subprocess.Popen]) -> tuple[list[dict], float]:
    """Every child's JSON, and the largest peak RSS (MiB) of any of them."""
    outs, peak = [], 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out, err = p.stdout.read(), p.stderr.read()
        if p.returncode != 0:
            raise RuntimeError(f"a worker failed ({p.returncode}): {err[-2000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
        peak = max(peak, usage.ru_maxrss / 1024)
    return outs, peak


def _home(base: Path, name: str, contracts: Path, catalog: str | None) -> dict[str, str]:
    home = base / name
    shutil.rmtree(home, ignore_errors=True)
    (home / "data_contracts" / "clinics").mkdir(parents=True)
    for c in sorted(contracts.glob("*.yaml")):
        shutil.copyfile(c, home / "data_contracts" / "clinics" / c.name)
    env = {**os.environ, "TANDEM_HOME": str(home), "TANDEM_PSEUDONYM_KEY": "bench-only-key",
           "GX_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(REPO)}
    env.pop("TANDEM_CATALOG_URL", None)
    if catalog:
        env["TANDEM_CATALOG_URL"] = catalog
    return env


def _prepare_lake(env: dict[str, str]) -> None:
    """Make the lake and its tables once, before the timed workers start."""
    subprocess.run([sys.executable, "-c", "from tandem.core import warehouse; "
                    "warehouse.connect().close()"], env=env, check=True, cwd=REPO)


def run(size: str, catalogs: list[str], base: Path) -> list[dict]:
    data = backfill(size)
    files = data.files
    clinics = sorted({f.parent.name for f in files})
    halves = [[f for f in files if f.parent.name in clinics[i::2]] for i in range(2)]
    rows: list[dict] = []
    pg = None
    try:
        for catalog in catalogs:
            url = None
            if catalog == "postgres":
                from tests.postgres import PostgresServer

                pg = PostgresServer(base / "pg").start()
            for workers in (1, 2):
                if pg is not None:
                    db = f"lake_{workers}"
                    pg.create_database(db)
                    url = pg.url(db)
                env = _home(base, f"{catalog}-{workers}", data.contracts, url)
                _prepare_lake(env)
                parts = [files] if workers == 1 else halves
                lists = []
                for i, part in enumerate(parts):
                    path = base / f"files-{catalog}-{workers}-{i}.json"
                    path.write_text(json.dumps([str(p) for p in part]))
                    lists.append(path)
                t0 = time.perf_counter()
                outs, peak = _wait([_run(INGEST, [str(p), AS_OF], env) for p in lists])
                secs = time.perf_counter() - t0
                loaded = sum(o["rows_loaded"] for o in outs)
                rows.append({"step": f"ingest, {workers} worker{'s' if workers > 1 else ''}, "
                                     f"{catalog} catalog", "seconds": round(secs, 2),
                             "rows_loaded": loaded, "rows_per_s": round(loaded / secs),
                             "files": len(files), "peak_rss_mib": round(peak, 1),
                             "catalog": catalog, "workers": workers})
                if workers == 1:  # the aggregate, on the lake one worker loaded
                    for mode, label in (("serial", "one clinic at a time"),
                                        ("2", "per-clinic fan-out (2 threads)")):
                        t0 = time.perf_counter()
                        outs, peak = _wait([_run(AGGREGATE, [AS_OF, mode], env)])
                        rows.append({"step": f"aggregate, {label}, {catalog} catalog",
                                     "seconds": round(time.perf_counter() - t0, 2),
                                     "peak_rss_mib": round(peak, 1), "catalog": catalog,
                                     "clinics": outs[0]["clinics"],
                                     "clients": outs[0]["clients"]})
            if pg is not None:
                pg.stop()
                pg = None
    finally:
        if pg is not None:
            pg.stop()
    for catalog in catalogs:
        one = next(r for r in rows if r.get("catalog") == catalog and r.get("workers") == 1)
        two = next(r for r in rows if r.get("catalog") == catalog and r.get("workers") == 2)
        two["speedup_vs_1"] = round(two["rows_per_s"] / one["rows_per_s"], 2)
        serial = next(r for r in rows if r["step"].startswith("aggregate, one")
                      and r["catalog"] == catalog)
        fan = next(r for r in rows if r["step"].startswith("aggregate, per-clinic")
                   and r["catalog"] == catalog)
        fan["ratio_vs_serial"] = round(fan["seconds"] / serial["seconds"], 2)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", choices=["small", "reference"])
    ap.add_argument("--catalog", default="both", choices=["sqlite", "postgres", "both"])
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    catalogs = ["sqlite", "postgres"] if args.catalog == "both" else [args.catalog]
    base = args.workdir or Path(tempfile.mkdtemp(prefix="tandem-bench-scaling-"))
    try:
        rows = run(args.size, catalogs, base)
    finally:
        if args.workdir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
