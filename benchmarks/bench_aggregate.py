"""Benchmark ``aggregate``: a full rebuild and a 1 % increment, time and peak memory.

    python benchmarks/bench_aggregate.py --size small|reference|large [--workdir DIR]

Data: ``tandem.synth`` files, ingested for real (``tandem.pipeline.ingest.process_file``)
into a cached seed home (``<workdir>/<data>/seed``: its lake), holding back the newest
delivery of some clinics as the increment. Ingesting 10 M administrations file by file
would take long, so ``reference`` and ``large`` ingest the files of the first few clinics
and then *replicate* their answers (``response_row``) with re-keyed clients
(``client_key || '~r<i>'``, same batches) up to the target size; the held-back files are
ingested for real after the full rebuild and replicated the same way (new batches, so the
increment is ``replicas`` x the real one, about 1 % of the administrations). ``small`` is
the plain demo-size set, no replication.

Each run copies the seed, then in fresh child processes (peak RSS and CPU seconds, user +
system, are that process's own, from ``os.wait4``; the machine may be shared, so CPU time is
the steadier measure): 1. ``aggregate(full=True)`` (the baseline); 2. the increment
is loaded (not timed); 3. ``aggregate()`` incremental. The children call
``tandem.pipeline.aggregate.run_aggregate``: the flow's code without Prefect (not even
its import).
Prints a JSON list of rows.
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

# data: generated set (scale); clinics: seed clinics ingested for real (None = all);
# target: administrations after replication (None = no replication).
SIZES = {
    "small": {"data": "small", "scale": 1.0, "clinics": None, "target": None},
    "reference": {"data": "ref", "scale": 90.0, "clinics": 5, "target": 1_000_000},
    "large": {"data": "ref", "scale": 90.0, "clinics": 5, "target": 10_000_000},
}
INCREMENT_SHARE = 0.01
SEED = 42
DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "tandem-bench-aggregate"

PREPARE = """
import json, shutil, sys, datetime as dt
from pathlib import Path
from tandem.core.settings import Settings
from tandem.core.contracts import load_clinic_contracts, load_instruments
from tandem.core.pseudonym import load_key
from tandem.pipeline.ingest import IngestRun, process_file
home = Path(sys.argv[1])
files = json.loads(Path(sys.argv[2]).read_text())
replicas = int(sys.argv[5])
as_of, contracts_src = dt.date.fromisoformat(sys.argv[3]), Path(sys.argv[4])
settings = Settings(home=home)
settings.ensure_dirs()
for c in sorted(contracts_src.glob("*.yaml")):
    shutil.copyfile(c, settings.local_contracts_dir / "clinics" / c.name)
contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
key = load_key(settings)
from tandem.core import warehouse
before = warehouse.latest_batch_id(settings)
for p, clinic in files:
    process_file(Path(p), IngestRun(settings, contracts, instruments, key, clinic_hint=clinic,
                                    as_of=as_of))
if replicas > 1:  # the new rows again for re-keyed clients (see the module doc)
    with warehouse.writer(settings) as con:
        warehouse.run_transaction(con, lambda c: c.execute(
            "INSERT INTO response_row SELECT clinic_id, client_key || '~r' || r, "
            "therapist_id, session_date, session_number, instrument, item, score, batch_id, "
            "source_row, source_ref FROM response_row, range(1, ?) t(r) WHERE batch_id > ?",
            [replicas, before]), what="replicate the increment")
"""

AGGREGATE = """
import sys, json, time, datetime as dt
from pathlib import Path
from tandem.core.settings import Settings
from tandem.pipeline.aggregate import run_aggregate
settings = Settings(home=Path(sys.argv[1]))
t = time.perf_counter()
info = run_aggregate(settings, dt.date.fromisoformat(sys.argv[2]), full=sys.argv[3] == "full")
info["seconds"] = time.perf_counter() - t
print(json.dumps(info, default=str))
"""


REPLICATE = """
import sys
from pathlib import Path
from tandem.core import warehouse
from tandem.core.settings import Settings
settings = Settings(home=Path(sys.argv[1]))
with warehouse.writer(settings) as con:
    warehouse.run_transaction(con, lambda c: c.execute(
        "INSERT INTO response_row SELECT clinic_id, client_key || '~r' || r, therapist_id, "
        "session_date, session_number, instrument, item, score, batch_id, source_row, "
        "source_ref FROM response_row, range(1, ?) t(r)", [int(sys.argv[2])]),
        what="replicate the seed")
    warehouse.run_transaction(con, lambda c: c.execute(
        "CALL ducklake_merge_adjacent_files('lake')").fetchall(), what="compact")
"""


def clone_home(src: Path, dst: Path) -> None:
    """Copy an embedded home (its lake's SQLite catalog and data files) and point the copy's
    catalog at the copy's data folder: DuckLake keeps its data path in the catalog."""
    import sqlite3

    shutil.copytree(src, dst)
    catalog = dst / "lake" / "catalog.sqlite"
    con = sqlite3.connect(catalog)
    try:
        con.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
                    [str(dst / "lake" / "data") + "/"])
        con.commit()
    finally:
        con.close()


def _child(
    code: str, *args: str, env: dict | None = None
) -> tuple[float, float, str, float]:
    """Run ``code`` in a fresh interpreter: (wall seconds, peak RSS MiB, stdout, CPU seconds
    = user + system of the child, from ``os.wait4``)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=out,
                                env={**os.environ, **(env or {})},
                                cwd=Path(__file__).parent.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {text[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, text, usage.ru_utime + usage.ru_stime


def _file_list(path: Path, data: Path, files: list[dict]) -> str:
    """The files to ingest with their clinic, in a JSON file (thousands do not fit an argv)."""
    path.write_text(json.dumps([[str(data / "files" / f["file"]), f["clinic_id"]]
                                for f in files]))
    return str(path)


def _split_increment(files: list[dict]) -> tuple[list[dict], list[dict]]:
    """Base files and held-back files: the last delivery of clinics in turn, until about
    ``INCREMENT_SHARE`` of the administrations are held back (new monthly deliveries)."""
    total = sum(f.get("administrations", 0) for f in files)
    last: dict[str, int] = {}
    for i, f in enumerate(files):
        last[f["clinic_id"]] = i
    held: set[int] = set()
    admins = 0
    for i in sorted(last.values(), key=lambda i: files[i].get("administrations", 0)):
        if admins >= INCREMENT_SHARE * total:
            break
        held.add(i)
        admins += files[i].get("administrations", 0)
    base = [f for i, f in enumerate(files) if i not in held]
    return base, [files[i] for i in sorted(held)]


def prepare(size: str, workdir: Path) -> dict:
    """Generate (once), ingest the seed warehouse (once) and replicate it to ``size``
    (once); returns the cached layout."""
    spec = SIZES[size]
    droot = workdir / spec["data"]
    data = droot / "input"
    if not (data / "manifest.json").exists():
        from tandem.synth import GenerateOptions, generate

        generate(GenerateOptions(out=data, seed=SEED, scale=spec["scale"]))
    manifest = json.loads((data / "manifest.json").read_text())
    files = manifest["files"]
    if spec["clinics"]:
        seed_clinics = list(dict.fromkeys(f["clinic_id"] for f in files))[: spec["clinics"]]
        files = [f for f in files if f["clinic_id"] in seed_clinics]
    base_files, held = _split_increment(files)
    contracts = str(data / "data_contracts" / "clinics")
    env = {"TANDEM_PSEUDONYM_KEY": "bench-only-key"}
    seed = droot / "seed"
    if not (droot / "seed.done").exists():
        shutil.rmtree(seed, ignore_errors=True)
        start = time.perf_counter()
        _child(PREPARE, str(seed), _file_list(droot / "seed-files.json", data, base_files),
               manifest["as_of"], contracts, "1", env=env)
        (droot / "seed.done").write_text(json.dumps({"ingest_seconds": time.perf_counter()
                                                     - start}))
    seed_admins = sum(f.get("administrations", 0) for f in base_files)
    replicas = max(1, round(spec["target"] / seed_admins)) if spec["target"] else 1
    base = workdir / size / "base"
    if replicas > 1 and not (workdir / size / "base.done").exists():
        shutil.rmtree(base, ignore_errors=True)
        clone_home(seed, base)
        _child(REPLICATE, str(base), str(replicas), env=env)
        (workdir / size / "base.done").write_text("{}")
    return {"root": workdir / size, "data": data, "base": base if replicas > 1 else seed,
            "held": held, "manifest": manifest, "replicas": replicas,
            "administrations": seed_admins * replicas, "contracts": contracts, "env": env}


def run(size: str, workdir: Path = DEFAULT_WORKDIR) -> list[dict]:
    """Full rebuild and 1 % increment at ``size``; one result row per scenario."""
    layout = prepare(size, workdir)
    manifest, data, env = layout["manifest"], layout["data"], layout["env"]
    home = layout["root"] / "run"
    shutil.rmtree(home, ignore_errors=True)
    clone_home(layout["base"], home)
    as_of = manifest["as_of"]
    full_s, full_mb, full_out, full_cpu = _child(AGGREGATE, str(home), as_of, "full", env=env)
    full_info = json.loads(full_out.strip().splitlines()[-1])
    _child(PREPARE, str(home), _file_list(layout["root"] / "held-files.json", data,
                                          layout["held"]),
           as_of, layout["contracts"], str(layout["replicas"]), env=env)
    inc_s, inc_mb, inc_out, inc_cpu = _child(AGGREGATE, str(home), as_of, "incremental",
                                             env=env)
    inc_info = json.loads(inc_out.strip().splitlines()[-1])
    common = {"size": size, "administrations": layout["administrations"],
              "replicas": layout["replicas"], "cpus": os.cpu_count()}
    return [
        {"scenario": "aggregate_full", **common, "tandem_seconds": round(full_s, 2),
         "baseline_seconds": None, "cpu_seconds": round(full_cpu, 2),
         "peak_rss_mb": round(full_mb, 1),
         "inner_seconds": round(full_info["seconds"], 2),
         "response_rows": full_info.get("responses"),
         "clients_recomputed": full_info.get("clients_recomputed")},
        {"scenario": "aggregate_increment_1pct", **common, "tandem_seconds": round(inc_s, 2),
         "baseline_seconds": round(full_s, 2), "cpu_seconds": round(inc_cpu, 2),
         "peak_rss_mb": round(inc_mb, 1),
         "inner_seconds": round(inc_info["seconds"], 2),
         "held_back_files": len(layout["held"]),
         "response_rows": inc_info.get("responses"),
         "increment_rows": inc_info.get("response_rows_read"),
         "clients_recomputed": inc_info.get("clients_recomputed"),
         "ratio_to_full": round(inc_s / full_s, 3),
         "cpu_ratio_to_full": round(inc_cpu / full_cpu, 3)},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                    help="cache of generated data and ingested base warehouses")
    ap.add_argument("--prepare-only", action="store_true", help="generate and ingest, no timing")
    args = ap.parse_args()
    if args.prepare_only:
        layout = prepare(args.size, args.workdir)
        print(json.dumps({"base": str(layout["base"]), "held_back": len(layout["held"]),
                          "replicas": layout["replicas"]}))
        return
    print(json.dumps(run(args.size, args.workdir), indent=1))


if __name__ == "__main__":
    main()
