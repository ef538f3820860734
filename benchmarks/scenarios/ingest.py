"""Ingest scenarios: one canonical CSV, and a back-fill of daily files in four formats.

Steps (each a child process, each repeat into a fresh TANDEM_HOME / database file):

- ``duckdb read_csv`` (baseline): DuckDB reads the CSV file(s) into a table.
- ``pandas + GX`` (baseline, single-file ingest only): benchmarks/scenarios/
  pandas_gx_baseline.py, a plain script with roughly the same rules.
- ``tandem ingest (served API)``: the whole ``tandem ingest PATH --as-of`` command with
  ``PREFECT_API_URL`` pointing at a Prefect server started once for the scenario, as
  ``tandem serve`` runs in production. **Targets are judged on this step.**
- ``tandem ingest (temporary server)``: the same command with no API URL, so Prefect
  starts (and stops) a temporary server inside the command, as on a laptop.
- ``process_file, no Prefect`` (info): tandem.pipeline.ingest.process_file for each file; the
  difference to the commands is the fixed cost of the CLI, Prefect and its server.

At ``large`` (10 M, where the issue sets no baseline) only DuckDB and the served command
run: the pandas + GX script, the temporary-server variant and ``process_file`` would each
add most of an hour.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from benchmarks import data
from benchmarks.harness import PYTHON, StepResult, measure
from benchmarks.scenarios import Context, free_port

# The installed console script when there is one (what a user runs), else the module.
_SCRIPT = Path(PYTHON).parent / "tandem"
TANDEM = [str(_SCRIPT)] if _SCRIPT.exists() else [PYTHON, "-m", "tandem.app.cli"]
SERVED = "tandem ingest (served API)"
TEMPORARY = "tandem ingest (temporary server)"
DIRECT = "process_file, no Prefect"
DUCKDB = "duckdb read_csv"
DUCKDB_ALL = "duckdb read_csv, read_json, fastexcel"  # the back-fill's four formats
PANDAS_GX = "pandas + GX"


def migrate_prefect(ctx: Context) -> None:
    """Create the run's Prefect database once (untimed)."""
    subprocess.run([PYTHON, "-m", "prefect", "server", "database", "upgrade", "-y"],
                   env={**os.environ, **ctx.base_env()}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)


@contextlib.contextmanager
def prefect_server(ctx: Context, timeout: float = 600) -> Iterator[str]:
    """A Prefect server for the duration of the block; yields its API URL."""
    port = free_port()
    home = ctx.workdir / "prefect-served"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **ctx.base_env(), "PREFECT_HOME": str(home)}
    log = (ctx.logdir / "prefect-server.log").open("ab")
    proc = subprocess.Popen(
        [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-ui", "--analytics-off"],
        env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({proc.returncode}); see "
                                   f"{ctx.logdir / 'prefect-server.log'}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("prefect server did not become healthy")
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _tandem_steps(ctx: Context, scenario: str, ds: data.DataSet, inputs: list[Path],
                  as_arg: list[str]) -> list[StepResult]:
    """The Tandem side: served API, temporary server, and no Prefect at all."""
    out: list[StepResult] = []
    ingest_cmd = [*TANDEM, "ingest", *as_arg, "--as-of", data.AS_OF, "--quiet"]

    def home(step: str):  # noqa: ANN202
        return lambda i: ctx.fresh_home(f"{scenario}-{step}-{i}", ds.contracts)

    try:
        with prefect_server(ctx) as url:
            def served_home(i: int) -> dict[str, str]:
                return {**home("served")(i), "PREFECT_API_URL": url}

            out.append(measure(scenario, ctx.size, SERVED, "tandem", lambda i: ingest_cmd,
                               repeat=ctx.repeat, setup=served_home, timeout=ctx.timeout,
                               logdir=ctx.logdir))
    except Exception as exc:  # the server itself failed to start
        out.append(StepResult(scenario, ctx.size, SERVED, "tandem", status="failed",
                              error=f"{type(exc).__name__}: {exc}"))
    ctx.drop_homes()
    if not (ctx.quick or ctx.smoke or ctx.size == "large"):
        out.append(measure(scenario, ctx.size, TEMPORARY, "tandem", lambda i: ingest_cmd,
                           repeat=ctx.repeat, setup=home("temporary"), timeout=ctx.timeout,
                           logdir=ctx.logdir))
        ctx.drop_homes()
    if ctx.smoke or ctx.size == "large":
        return out
    direct = [PYTHON, "-m", "benchmarks.scenarios.direct_ingest", data.AS_OF,
              *map(str, inputs)]
    out.append(measure(scenario, ctx.size, DIRECT, "info", lambda i: direct,
                       repeat=ctx.repeat, setup=home("direct"), timeout=ctx.timeout,
                       logdir=ctx.logdir))
    ctx.drop_homes()
    return out


def _duckdb(ctx: Context, scenario: str, csvs: list[Path], note: str,
            step: str = DUCKDB) -> StepResult:
    def cmd(i: int) -> list[str]:
        db = ctx.workdir / "homes" / f"{scenario}-duckdb-{i}.duckdb"
        db.parent.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        return [PYTHON, "-m", "benchmarks.scenarios.duckdb_baseline", str(db), *map(str, csvs)]

    res = measure(scenario, ctx.size, step, "baseline", cmd, repeat=ctx.repeat,
                  timeout=ctx.timeout, logdir=ctx.logdir, note=note)
    ctx.drop_homes()
    return res


def ingest_single(ctx: Context) -> list[StepResult]:
    """1 M administrations in one canonical CSV (10 M: the monthly files as delivered)."""
    ds = data.canonical(ctx.size)
    spec = data.SIZES[ctx.size]
    inputs = [ds.single_csv] if spec.ingest_input == "single" and ds.single_csv else ds.files
    shape = (f"one canonical CSV, {ds.administrations:,} administrations, "
             f"{inputs[0].stat().st_size / 2**20:,.0f} MiB" if len(inputs) == 1 else
             f"{len(inputs)} monthly canonical CSVs, {ds.administrations:,} administrations, "
             f"{sum(p.stat().st_size for p in inputs) / 2**20:,.0f} MiB")
    migrate_prefect(ctx)
    out = [_duckdb(ctx, "ingest", inputs, shape)]

    def gx_cmd(i: int) -> list[str]:
        db = ctx.workdir / "homes" / f"ingest-pandas-{i}.duckdb"
        db.parent.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        return [PYTHON, "-m", "benchmarks.scenarios.pandas_gx_baseline", str(db),
                str(ds.contracts), data.AS_OF, *map(str, inputs)]

    if ctx.size != "large":  # the issue sets no baseline at 10 M; it would take about an hour
        out.append(measure("ingest", ctx.size, PANDAS_GX, "baseline", gx_cmd,
                           repeat=ctx.repeat, timeout=ctx.timeout, logdir=ctx.logdir))
        ctx.drop_homes()
    out += _tandem_steps(ctx, "ingest", ds, inputs, [str(p) for p in inputs])
    for r in out:
        r.details["input"] = shape
        r.details["administrations"] = ds.administrations
    return out


def backfill(ctx: Context) -> list[StepResult]:
    """The same volume as daily files in all four formats, ingested as one folder.

    One run per step (a run is already thousands of file loads; three would take hours)
    and no temporary-server variant (its fixed cost is the ingest scenario's)."""
    ctx = dataclasses.replace(ctx, repeat=1, quick=True)
    ds = data.backfill(ctx.size)
    csvs = [p for p in ds.files if p.suffix == ".csv"]
    kinds: dict[str, int] = {}
    for p in ds.files:
        kinds[p.suffix] = kinds.get(p.suffix, 0) + 1
    shape = (f"{len(ds.files):,} files ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}"
             f"), {ds.administrations:,} administrations")
    migrate_prefect(ctx)
    out = [_duckdb(ctx, "backfill", ds.files,
                   f"reads every file as issue 15 sets it: the {len(csvs):,} CSV files with "
                   "read_csv, FHIR NDJSON with read_json, Excel with fastexcel into DuckDB",
                   step=DUCKDB_ALL)]
    out += _tandem_steps(ctx, "backfill", ds, ds.files, [str(ds.root / "inbox")])
    for r in out:
        r.details["input"] = shape
        r.details["administrations"] = ds.administrations
    return out
