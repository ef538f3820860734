"""Scenarios measured by colleagues' scripts (``benchmarks/bench_*.py``), run as children.

Each script is run ``repeat`` times as a child process; it prints JSON, which is turned
into StepResults here (median over the repeats of the seconds the script reports, and
the largest peak memory it reports). The whole child's wall time and ``ru_maxrss`` are
kept in ``details`` too. A script that is missing or fails is reported as failed.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks.harness import PYTHON, REPO_ROOT, StepResult, measure
from benchmarks.scenarios import Context

DASHBOARD_ADMINISTRATIONS = {"small": 10_000, "reference": 1_000_000, "large": 10_000_000}
SECONDS_KEYS = ("median_s", "tandem_seconds", "seconds", "median_seconds", "wall_s")
MEMORY_KEYS = ("peak_rss_mib", "peak_rss_mb", "peak_rss_mib_largest_process", "peak_mib")


def _script(name: str) -> Path:
    return REPO_ROOT / "benchmarks" / f"{name}.py"


def _missing(scenario: str, ctx: Context, name: str) -> list[StepResult]:
    return [StepResult(scenario, ctx.size, scenario, "tandem", status="failed",
                       error=f"benchmarks/{name}.py does not exist yet")]


def _first(d: dict, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _rows(outputs: list[Any]) -> dict[str, list[dict]]:
    """Step name -> its dict from each repeat's output."""
    by_step: dict[str, list[dict]] = {}
    for out in outputs:
        items = out if isinstance(out, list) else [out]
        for d in items:
            if not isinstance(d, dict):
                continue
            name = str(_first(d, ("scenario", "step", "name", "variant", "benchmark")) or "run")
            by_step.setdefault(name, []).append(d)
    return by_step


def _from_outputs(scenario: str, ctx: Context, outer: StepResult,
                  roles: dict[str, str] | None = None) -> list[StepResult]:
    """StepResults from the JSON the script printed (one per step it reports)."""
    if outer.status != "ok":
        return [outer]
    outputs = outer.details.get("outputs", [])
    results = []
    for name, ds in _rows(outputs).items():
        secs = [float(s) for s in (_first(d, SECONDS_KEYS) for d in ds) if s is not None]
        mems = [float(m) for m in (_first(d, MEMORY_KEYS) for d in ds) if m is not None]
        r = StepResult(scenario, ctx.size, name, (roles or {}).get(name, "tandem"),
                       runs_s=[round(s, 3) for s in secs],
                       median_s=round(statistics.median(secs), 3) if secs else None,
                       peak_rss_mib=round(max(mems), 1) if mems else None,
                       details={"reported": ds[-1], "child_wall_s": outer.runs_s,
                                "child_peak_rss_mib": outer.peak_rss_mib,
                                "child_peak_tree_mib": outer.peak_tree_mib})
        results.append(r)
    return results or [outer]


def aggregate(ctx: Context) -> list[StepResult]:
    """benchmarks/bench_aggregate.py: full rebuild, then after a 1 % increment."""
    if not _script("bench_aggregate").exists():
        return _missing("aggregate", ctx, "bench_aggregate")
    work = ctx.workdir.parent / "aggregate-cache"  # kept across runs of this size
    cmd = [PYTHON, str(_script("bench_aggregate")), "--size", ctx.size, "--workdir", str(work)]
    outer = measure("aggregate", ctx.size, "bench_aggregate.py", "info", lambda i: cmd,
                    repeat=ctx.repeat, timeout=ctx.timeout, logdir=ctx.logdir)
    return _from_outputs("aggregate", ctx, outer)


def scaling(ctx: Context) -> list[StepResult]:
    """benchmarks/bench_scaling.py: ingest with one and two worker processes, and the
    aggregate's per-clinic fan-out, on the SQLite and the PostgreSQL catalog."""
    if not _script("bench_scaling").exists():
        return _missing("scaling", ctx, "bench_scaling")
    size = "small" if ctx.size == "small" else "reference"
    cmd = [PYTHON, str(_script("bench_scaling")), "--size", size,
           "--workdir", str(ctx.workdir / "scaling")]
    outer = measure("scaling", ctx.size, "bench_scaling.py", "info", lambda i: cmd,
                    repeat=1, setup=lambda i: ctx.base_env(), timeout=ctx.timeout,
                    logdir=ctx.logdir)
    return _from_outputs("scaling", ctx, outer)


def dashboard(ctx: Context) -> list[StepResult]:
    """benchmarks/bench_dashboard.py: server-side render of every page (AppTest)."""
    if not _script("bench_dashboard").exists():
        return _missing("dashboard", ctx, "bench_dashboard")
    home = ctx.workdir / "dashboard-home"
    cmd = [PYTHON, str(_script("bench_dashboard")), "--administrations",
           str(DASHBOARD_ADMINISTRATIONS[ctx.size]), "--repeat", str(max(ctx.repeat, 3))]
    if ctx.size == "large":
        # 10 M administrations of synthetic marts took more than 21 GiB to build: at this
        # size the pages render the marts the aggregate scenario published through the
        # real pipeline (its home is kept after the run).
        home = ctx.workdir.parent / "aggregate-cache" / ctx.size / "run"
        if not (home / "lake").exists():
            return [StepResult("dashboard", ctx.size, "bench_dashboard.py", "info",
                               status="skipped",
                               error="run the aggregate scenario of this size first: its "
                                     "published marts are what the pages render")]
        cmd.append("--published-only")
    outer = measure("dashboard", ctx.size, "bench_dashboard.py", "info",
                    lambda i: [*cmd, *(["--reuse"] if i else [])], repeat=1,
                    setup=lambda i: {**ctx.base_env(), "TANDEM_HOME": str(home)},
                    timeout=ctx.timeout, logdir=ctx.logdir)
    if outer.status != "ok" or not outer.details.get("outputs"):
        return [outer]
    report = outer.details["outputs"][-1]
    results = []
    for page, r in (report.get("pages") or {}).items():
        if "error" in r:
            results.append(StepResult("dashboard", ctx.size, f"page {page}", "tandem",
                                      status="failed", error=r["error"]))
            continue
        results.append(StepResult(
            "dashboard", ctx.size, f"page {page}", "tandem", runs_s=[r["warm_s"]],
            median_s=r["warm_s"], peak_rss_mib=outer.peak_rss_mib,
            note=f"warm median; first render after a publish (cold) {r['cold_s']:.2f} s",
            details={"cold_s": r["cold_s"], "warm_s": r["warm_s"]}))
    for r in results:
        r.details.update(administrations=report.get("administrations"),
                         child_wall_s=outer.runs_s)
    return results or [outer]


LATENCY_DROPS = {"small": 3, "reference": 10, "large": 10}


def latency(ctx: Context) -> list[StepResult]:
    """benchmarks/bench_latency.py: a 10 k-row file dropped to marts published, served vs
    ingest + aggregate called directly (median of 10 drops; 3 at ``small``)."""
    if not _script("bench_latency").exists():
        return _missing("latency", ctx, "bench_latency")
    cmd = [PYTHON, str(_script("bench_latency")), "--drops", str(LATENCY_DROPS[ctx.size])]
    outer = measure("latency", ctx.size, "bench_latency.py", "info", lambda i: cmd, repeat=1,
                    setup=lambda i: ctx.base_env(), timeout=ctx.timeout, logdir=ctx.logdir)
    if outer.status != "ok" or not outer.details.get("outputs"):
        return [outer]
    rep = outer.details["outputs"][-1]
    common = {"rows_per_file": rep.get("rows_per_file"), "drops": rep.get("drops"),
              "mode": rep.get("mode"), "child_wall_s": outer.runs_s}
    return [
        StepResult("latency", ctx.size, "ingest + aggregate, direct", "baseline",
                   runs_s=rep.get("direct_s", []), median_s=rep.get("direct_median_s"),
                   note="in-process flows after a warm-up drop", details=common),
        StepResult("latency", ctx.size, "file drop to marts, served", "tandem",
                   runs_s=rep.get("served_s", []), median_s=rep.get("served_median_s"),
                   peak_rss_mib=outer.peak_rss_mib, peak_tree_mib=outer.peak_tree_mib,
                   note=f"tandem serve, {rep.get('mode')} drops; memory is the benchmark "
                        "process tree's", details=common),
    ]


def generate(ctx: Context) -> list[StepResult]:
    """benchmarks/bench_generate.py: ``tandem generate`` time and peak memory."""
    if not _script("bench_generate").exists():
        return _missing("generate", ctx, "bench_generate")
    cmd = [PYTHON, str(_script("bench_generate")), "--size", ctx.size]
    outer = measure("generate", ctx.size, "bench_generate.py", "info", lambda i: cmd,
                    repeat=1 if ctx.size == "large" else ctx.repeat, timeout=ctx.timeout,
                    logdir=ctx.logdir)
    results = _from_outputs("generate", ctx, outer)
    for r in results:
        rep = r.details.get("reported", {})
        if rep:
            r.step = "tandem generate"
            r.peak_rss_mib = rep.get("peak_rss_mib_largest_process", r.peak_rss_mib)
            r.peak_tree_mib = rep.get("peak_rss_mib_total")
            r.note = (f"{rep.get('administrations', 0):,} administrations, "
                      f"{rep.get('files', 0):,} files, {rep.get('workers')} workers")
    return results


def cli_ingest(ctx: Context) -> list[StepResult]:
    """benchmarks/bench_cli_ingest.py: one small file through the whole ``tandem ingest``
    command, with no Prefect server and with one running (issue 15: under 5 s each)."""
    if not _script("bench_cli_ingest").exists():
        return _missing("cli_ingest", ctx, "bench_cli_ingest")
    cmd = [PYTHON, str(_script("bench_cli_ingest")), "--repeat", str(max(ctx.repeat, 5))]
    outer = measure("cli_ingest", ctx.size, "bench_cli_ingest.py", "info", lambda i: cmd,
                    repeat=1, setup=lambda i: ctx.base_env(), timeout=ctx.timeout,
                    logdir=ctx.logdir)
    results = _from_outputs("cli_ingest", ctx, outer)
    for r in results:
        rep = r.details.get("reported", {})
        if rep:
            r.runs_s = rep.get("runs_s", r.runs_s)
            r.peak_tree_mib = rep.get("peak_tree_mib")
            r.note = (f"{rep.get('rows_per_file')} rows per file; target under "
                      f"{rep.get('target_s')} s: {'met' if rep.get('met') else 'missed'}")
    return results

