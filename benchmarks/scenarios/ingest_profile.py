"""Before/after measurement of the ingest step (tracker issue 8), with a same-run baseline.

    python -m benchmarks.scenarios.ingest_profile single [--code DIR ...] [--limit N]
    python -m benchmarks.scenarios.ingest_profile backfill [--code DIR ...] [--limit N]

``single`` ingests ``benchmarks/.data/reference/canonical/canonical.csv`` (1 M
administrations, 4.5 M item rows; or the canonical CSVs given with ``--input``);
``backfill`` the daily files of ``benchmarks/.data/reference/backfill/inbox/`` (all four
formats), or the first
``--limit`` of them spread over the clinics. Each step runs in its own child process
and is reported with wall time, ``user+sys`` CPU time (``getrusage`` of the children)
and the child's peak RSS:

- ``duckdb``: ``CREATE TABLE t AS SELECT * FROM read_csv(...)`` of the CSV files;
- ``tandem[DIR]``: the ingest work without Prefect, with the code tree DIR on
  ``sys.path`` (e.g. a copy of the tree before a change, then the current tree). It calls
  ``tandem.pipeline.ingest.process_files``.

Prints one JSON line per step and a summary table; ``--profile FILE`` writes a cProfile
of the (last) Tandem step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "benchmarks" / ".data" / "reference"
AS_OF = "2026-06-30"

_DUCKDB = """
import duckdb, json, sys
files = json.loads(open(sys.argv[1]).read())
con = duckdb.connect(sys.argv[2])
con.execute("CREATE TABLE t AS SELECT * FROM read_csv($1, union_by_name=true)", [files])
import resource
print(json.dumps({"rows": con.execute("SELECT count(*) FROM t").fetchone()[0],
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

_TANDEM = """
import datetime as dt, json, os, sys
from collections import Counter
from pathlib import Path
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
import tandem.pipeline.ingest as ingest
from tandem.core.contracts import load_clinic_contracts, load_instruments
from tandem.core.pseudonym import load_key
from tandem.core.settings import get_settings
paths = [Path(p) for p in json.loads(Path(sys.argv[1]).read_text())]
as_of = dt.date.fromisoformat(sys.argv[2])
settings = get_settings()
settings.ensure_dirs()
run = ingest.IngestRun(settings, load_clinic_contracts(settings), load_instruments(settings),
                       load_key(settings), trigger="bench", as_of=as_of)
prof = None
if len(sys.argv) > 3 and sys.argv[3]:
    import cProfile
    prof = cProfile.Profile()
    prof.enable()
results = ingest.process_files(paths, run)
if prof is not None:
    prof.disable()
    prof.dump_stats(sys.argv[3])
st = Counter(r.status for r in results)
print(json.dumps({"files": len(results), "statuses": dict(st),
                  "rows_loaded": sum(r.rows_loaded for r in results),
                  "rows_quarantined": sum(r.rows_quarantined for r in results),
                  "rows_duplicate": sum(r.rows_duplicate for r in results),
                  "maxrss_kib": __import__("resource").getrusage(0).ru_maxrss}))
"""


def _run(label: str, cmd: list[str], env: dict[str, str], cwd: str | None = None) -> dict:
    """Run one child; its wall time, user+sys CPU time and peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd: "python -c" puts the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = {"step": label, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "peak_rss_mib": None, "rc": proc.returncode}
    try:
        out["result"] = json.loads(proc.stdout.strip().splitlines()[-1])
        out["peak_rss_mib"] = round(out["result"].pop("maxrss_kib") / 1024)
    except (IndexError, ValueError):
        out["stderr"] = proc.stderr[-3000:]
    print(json.dumps(out), flush=True)
    return out


def _inputs(kind: str, limit: int | None,
            given: list[str] | None = None) -> tuple[list[Path], list[Path], Path]:
    """(files Tandem ingests, CSV files DuckDB reads, folder of clinic contracts)."""
    if kind == "single":
        fs = [Path(p) for p in given] if given else [DATA / "canonical" / "canonical.csv"]
        return fs, fs, DATA / "canonical" / "data_contracts" / "clinics"
    inbox = DATA / "backfill" / "inbox"
    per_clinic = {c.name: sorted(c.iterdir()) for c in sorted(inbox.iterdir())}
    total = sum(len(v) for v in per_clinic.values())
    files: list[Path] = []
    for names in per_clinic.values():
        k = len(names) if limit is None else max(1, round(len(names) * limit / total))
        files += names[:k]
    files.sort(key=lambda p: (p.name.split("_")[-1], p.parent.name, p.name))
    csvs = [p for p in files if p.suffix == ".csv"]
    return files, csvs, DATA / "backfill" / "data_contracts" / "clinics"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["single", "backfill"])
    ap.add_argument("--code", action="append", default=[], type=lambda p: str(Path(p).resolve()),
                    help="a code tree to measure (default: this repo)")
    ap.add_argument("--limit", type=int, default=None, help="back-fill: about N files")
    ap.add_argument("--profile", default="", help="cProfile output of the Tandem step")
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument("--input", action="append", default=[],
                    help="single: canonical CSV(s) of the northside clinic instead")
    args = ap.parse_args(argv)
    files, csvs, contracts = _inputs(args.kind, args.limit, args.input)
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    base["GX_ANALYTICS_ENABLED"] = "false"
    steps = []
    with tempfile.TemporaryDirectory(prefix="ingest-profile-") as tmp:
        # the lists go in files: 2,000 paths overflow a command line
        csv_list, file_list = Path(tmp) / "csvs.json", Path(tmp) / "files.json"
        csv_list.write_text(json.dumps([str(p) for p in csvs]))
        file_list.write_text(json.dumps([str(p) for p in files]))
        if not args.skip_duckdb:
            steps.append(_run("duckdb", [sys.executable, "-c", _DUCKDB, str(csv_list),
                                         str(Path(tmp) / "baseline.duckdb")], base))
        for i, code in enumerate(args.code or [str(REPO)]):
            home = Path(tmp) / f"home{i}"
            (home / "data_contracts" / "clinics").mkdir(parents=True)
            for c in contracts.glob("*.yaml"):
                shutil.copy(c, home / "data_contracts" / "clinics" / c.name)
            env = {**base, "TANDEM_HOME": str(home), "PYTHONPATH": code,
                   "TANDEM_PSEUDONYM_KEY": "benchmark-key"}
            steps.append(_run(f"tandem[{code}]", [sys.executable, "-c", _TANDEM,
                                                   str(file_list), AS_OF, args.profile],
                              env, cwd=code))
            shutil.rmtree(home, ignore_errors=True)
    ref = steps[0] if not args.skip_duckdb else None
    print(f"\n{args.kind}: {len(files)} files ({len(csvs)} CSV for DuckDB)")
    print(f"{'step':60s} {'wall s':>8s} {'cpu s':>8s} {'RSS MiB':>8s} {'x duckdb wall/cpu':>18s}")
    for s in steps:
        ratio = (f"{s['wall_s'] / ref['wall_s']:.1f} / {s['cpu_s'] / ref['cpu_s']:.1f}"
                 if ref and ref["wall_s"] else "")
        print(f"{s['step'][-60:]:60s} {s['wall_s']:8.1f} {s['cpu_s']:8.1f} "
              f"{s['peak_rss_mib'] or 0:8d} {ratio:>18s}")


if __name__ == "__main__":
    main()
