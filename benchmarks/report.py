"""The report: targets judged from the step results, written to docs/performance.md.

Results are merged per (size, scenario) into ``docs/performance.json``: a run with
``--only`` replaces just the scenarios it ran, so the report can hold a ``reference``
run and a ``large`` run made at different times (each block keeps its date and machine).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.scenarios.ingest import DIRECT, DUCKDB, DUCKDB_ALL, PANDAS_GX, SERVED, TEMPORARY

SIZE_ORDER = ["small", "reference", "large"]
SCENARIO_ORDER = ["ingest", "backfill", "cli_ingest", "aggregate", "scaling", "dashboard",
                  "latency", "generate"]


def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU, OS, Python and library versions, and the load right now."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for pkg in ("duckdb", "polars", "great_expectations", "pandas", "prefect", "streamlit",
                "pyarrow"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# --- targets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    scenario: str
    size: str
    what: str
    baseline_s: float | None
    tandem_s: float | None
    ratio: float | None
    peak_mib: float | None
    target: str
    met: bool | None  # None: could not be judged (missing or failed steps)
    detail: str


def _step(steps: list[dict], name: str) -> dict | None:
    for s in steps:
        if s["step"] == name and s["status"] == "ok" and s.get("median_s") is not None:
            return s
    return None


def _failed(steps: list[dict], *names: str) -> str:
    """Why a target could not be judged: the named steps' errors, else any step's."""
    bad = [s for s in steps if s["status"] != "ok"]
    named = [s for s in bad if s["step"] in names] or bad
    errs = [f"{s['step']} failed: {_first_line(s.get('error'))}" for s in named]
    return "; ".join(errs) or "step not run"


def _first_line(error: str | None) -> str:
    """The informative line of an error: the first ``SomeError: ...`` line (the root
    cause when a child's traceback is nested in ours), else the first line."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    for ln in lines:
        if re.match(r"^[\w.]*(Error|Exception): ", ln):
            return ln[:200]
    return (lines[0] if lines else "")[:200]


def _ratio_target(scenario: str, size: str, steps: list[dict], tandem: str, baseline: str,
                  limit: float, strict: bool, target: str) -> Verdict:
    t, b = _step(steps, tandem), _step(steps, baseline)
    if not t or not b:
        return Verdict(scenario, size, f"{tandem} vs {baseline}", b and b["median_s"],
                       t and t["median_s"], None, t and t.get("peak_rss_mib"), target, None,
                       _failed(steps, tandem, baseline))
    ratio = t["median_s"] / b["median_s"] if b["median_s"] else float("inf")
    met = ratio < limit if strict else ratio <= limit
    detail = "met" if met else (
        f"missed: {ratio:.1f}x against {limit:g}x ({ratio / limit:.1f}x over)")
    return Verdict(scenario, size, f"{tandem} vs {baseline}", b["median_s"], t["median_s"],
                   round(ratio, 2), t.get("peak_rss_mib"), target, met, detail)


def _memory_target(scenario: str, size: str, steps: list[dict], step: str, limit_mib: float,
                   target: str) -> Verdict:
    s = _step(steps, step)
    if not s:
        return Verdict(scenario, size, step, None, None, None, None, target, None,
                       _failed(steps, step))
    peak = s.get("peak_rss_mib")
    met = peak is not None and peak < limit_mib
    detail = "met" if met else f"missed: {peak:,.0f} MiB against {limit_mib:,.0f} MiB"
    return Verdict(scenario, size, step, None, s["median_s"], None, peak, target, met, detail)


def _ingest(size: str, steps: list[dict]) -> list[Verdict]:
    """The speed issue's targets are set at 1 M; at 10 M the ratios are information."""
    info = "(info) set at 1 M: " if size == "large" else ""
    out = [
        _ratio_target("ingest", size, steps, SERVED, DUCKDB, 1.5, False,
                      f"{info}at most 1.5x DuckDB read_csv into a table"),
        _ratio_target("ingest", size, steps, DIRECT, DUCKDB, 1.3, False,
                      f"{info}without Prefect: at most 1.3x DuckDB"),
    ]
    if size == "large":
        out.append(_memory_target("ingest", size, steps, SERVED, 4096,
                                  "completes; peak memory under 4 GB"))
        return out
    out += [
        _ratio_target("ingest", size, steps, SERVED, PANDAS_GX, 1.0, True,
                      "(info) faster than pandas + GX"),
        _ratio_target("ingest", size, steps, TEMPORARY, DUCKDB, 1.5, False,
                      "(info) laptop mode vs DuckDB"),
    ]
    return out


def _backfill(size: str, steps: list[dict]) -> list[Verdict]:
    # Runs before 2026-12 read only the CSV files for the baseline (DUCKDB).
    base = DUCKDB_ALL if _step(steps, DUCKDB_ALL) else DUCKDB
    return [
        _ratio_target("backfill", size, steps, SERVED, base, 3.0, False,
                      "at most 3x DuckDB reading the same files"),
        _ratio_target("backfill", size, steps, DIRECT, base, 3.0, False,
                      "(info) Tandem's work alone vs DuckDB"),
    ]


def _aggregate(size: str, steps: list[dict]) -> list[Verdict]:
    out = [_ratio_target("aggregate", size, steps, "aggregate_increment_1pct",
                         "aggregate_full", 0.1, False, "increment at most a tenth of full")]
    full = _step(steps, "aggregate_full")
    if size == "large":
        out.append(_memory_target("aggregate", size, steps, "aggregate_full", 3072,
                                  "full rebuild within 3 GiB"))
        if full:
            met = full["median_s"] <= 120
            out.append(Verdict("aggregate", size, "aggregate_full", None, full["median_s"],
                               None, full.get("peak_rss_mib"), "full rebuild within 120 s",
                               met, "met" if met else
                               f"missed: {full['median_s']:.0f} s against 120 s"))
    elif full:
        out.append(Verdict("aggregate", size, "aggregate_full", None, full["median_s"], None,
                           full.get("peak_rss_mib"), "reported", True, "reported"))
    return out


def _cli_ingest(size: str, steps: list[dict]) -> list[Verdict]:
    """One small file from the command line, with and without a Prefect server: < 5 s."""
    out = []
    for s in steps:
        if s["status"] != "ok" or s.get("median_s") is None:
            continue
        met = s["median_s"] < 5
        out.append(Verdict("cli_ingest", size, s["step"], None, s["median_s"], None,
                           s.get("peak_rss_mib"), "returns in under 5 s", met,
                           "met" if met else f"missed: {s['median_s']:.1f} s"))
    return out or [Verdict("cli_ingest", size, "tandem ingest FILE", None, None, None, None,
                           "returns in under 5 s", None, _failed(steps))]


def _scaling(size: str, steps: list[dict]) -> list[Verdict]:
    """What a second worker process buys (reported; the capacity plan uses it)."""
    out = []
    for s in steps:
        if s["status"] != "ok" or s.get("median_s") is None:
            continue
        rep = s.get("details", {}).get("reported", {})
        extra = (f"{rep['rows_per_s']:,} rows/s" if rep.get("rows_per_s") else "")
        if rep.get("speedup_vs_1"):
            extra += f", {rep['speedup_vs_1']}x one worker"
        if rep.get("ratio_vs_serial"):
            extra += f", {rep['ratio_vs_serial']}x the serial aggregate's time"
        out.append(Verdict("scaling", size, s["step"], None, s["median_s"], None,
                           s.get("peak_rss_mib"), "(info) reported", True,
                           extra.strip(", ") or "reported"))
    return out


def _dashboard(size: str, steps: list[dict]) -> list[Verdict]:
    pages = [s for s in steps if s["step"].startswith("page ")]
    if not pages:
        return [Verdict("dashboard", size, "every page", None, None, None, None,
                        "under 1 s server-side", None, _failed(steps, "bench_dashboard.py"))]
    ok = [p for p in pages if p["status"] == "ok"]
    worst_warm = max((p["median_s"] for p in ok), default=None)
    worst_cold = max((p["details"].get("cold_s", 0) for p in ok), default=None)
    slow = [p["step"][5:] for p in ok if max(p["median_s"], p["details"].get("cold_s", 0)) >= 1]
    broken = [p["step"][5:] for p in pages if p["status"] != "ok"]
    met = not slow and not broken
    detail = "met (cold and warm)" if met else (
        f"missed: {', '.join(slow)} at 1 s or more" if slow else "") + (
        f"; failed: {', '.join(broken)}" if broken else "")
    return [Verdict("dashboard", size, f"slowest of {len(pages)} pages (warm; cold "
                    f"{worst_cold if worst_cold is None else round(worst_cold, 2)} s)", None,
                    worst_warm, None, None, "every page under 1 s server-side, cold and warm", met,
                    detail.strip("; "))]


def _latency(size: str, steps: list[dict]) -> list[Verdict]:
    served = [s for s in steps if s["role"] == "tandem" and s["status"] == "ok"
              and s.get("median_s") is not None]
    direct = [s for s in steps if s["role"] == "baseline" and s["status"] == "ok"
              and s.get("median_s") is not None]
    target = "at most 2x direct + 5 s (median of 10 drops)"
    if not served or not direct:
        return [Verdict("latency", size, "served vs direct", None, None, None, None, target,
                        None, _failed(steps, *(s["step"] for s in steps)))]
    t, b = served[0], direct[0]
    limit = 2 * b["median_s"] + 5
    met = t["median_s"] <= limit
    return [Verdict("latency", size, f"{t['step']} vs {b['step']}", b["median_s"],
                    t["median_s"], round(t["median_s"] / b["median_s"], 2),
                    t.get("peak_rss_mib"), target, met,
                    "met" if met else f"missed by {t['median_s'] - limit:.1f} s "
                    f"(limit {limit:.1f} s)")]


def _generate(size: str, steps: list[dict]) -> list[Verdict]:
    s = _step(steps, "tandem generate")
    if not s:
        return [Verdict("generate", size, "tandem generate", None, None, None, None,
                        "time and peak memory reported", None, _failed(
                            steps, "tandem generate", "bench_generate.py"))]
    return [Verdict("generate", size, "tandem generate", None, s["median_s"], None,
                    s.get("peak_rss_mib"), "time and peak memory reported", True,
                    f"reported ({s.get('note') or ''}; process tree "
                    f"{s.get('peak_tree_mib') or 0:,.0f} MiB)")]


JUDGES: dict[str, Callable[[str, list[dict]], list[Verdict]]] = {
    "ingest": _ingest, "backfill": _backfill, "aggregate": _aggregate,
    "dashboard": _dashboard, "latency": _latency, "generate": _generate,
    "cli_ingest": _cli_ingest, "scaling": _scaling,
}


# --- merge and write -----------------------------------------------------------------


def merge(path: Path, size: str, machine: dict, started: str, results: dict[str, list]) -> dict:
    """Fold this run's scenario results into the JSON store; returns the whole store."""
    store: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    store.setdefault("results", {})
    for scenario, steps in results.items():
        store["results"].setdefault(size, {})[scenario] = {
            "date": started, "machine": machine, "steps": [s.to_json() for s in steps]}
    store["updated"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(store, indent=1, default=str) + "\n")
    return store


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    return f"{x:,.2f}{unit}" if x < 100 else f"{x:,.0f}{unit}"


def _blocks(store: dict) -> list[tuple[str, str, dict]]:
    res = store.get("results", {})
    out = []
    for size in sorted(res, key=lambda s: SIZE_ORDER.index(s) if s in SIZE_ORDER else 9):
        for sc in sorted(res[size], key=lambda s: SCENARIO_ORDER.index(s)
                         if s in SCENARIO_ORDER else 99):
            out.append((size, sc, res[size][sc]))
    return out


def verdicts(store: dict) -> list[Verdict]:
    out: list[Verdict] = []
    for size, sc, block in _blocks(store):
        judge = JUDGES.get(sc)
        if judge:
            out.extend(judge(size, block["steps"]))
    return out


def write_markdown(store: dict, md: Path, chart: Path | None, notes: str = "") -> None:
    """docs/performance.md from the store (every size and scenario it holds)."""
    blocks = _blocks(store)
    lines = [
        "# Performance",
        "",
        "Generated by `python -m benchmarks` (issues 8 and 15); do not edit by hand — change "
        "`benchmarks/report.py` (notes) or re-run. Raw numbers: "
        "[performance.json](performance.json).",
        "",
        "Every step is a child process timed from outside (wall clock, start-up included); "
        "peak memory is the OS's `ru_maxrss` from `os.wait4` — the *largest single process* "
        "of the step's tree, not their sum (the sampled sum of the tree is in the step "
        "table as *tree*). Medians over the repeats. Targets are judged on the whole "
        "`tandem ingest` command against a Prefect server started once for the run "
        "(production runs `tandem serve`, a long-lived server); the same command with a "
        "temporary server inside it, and `process_file` without Prefect, are shown too.",
        "",
    ]
    machines = {json.dumps(b["machine"], sort_keys=True): b["machine"] for _, _, b in blocks}
    lines += ["## Machines and dates", ""]
    for m in machines.values():
        v = m.get("versions", {})
        lines.append(
            f"- {m.get('cores')} cores, {m.get('memory_gib')} GiB, {m.get('cpu') or '?'}; "
            f"{m.get('os')}; Python {m.get('python')}; DuckDB {v.get('duckdb')}, Polars "
            f"{v.get('polars')}, GX {v.get('great_expectations')}, pandas {v.get('pandas')}, "
            f"Prefect {v.get('prefect')}, Streamlit {v.get('streamlit')}; load average at "
            f"start {m.get('load_average')}")
    lines.append("")
    for size in dict.fromkeys(s for s, _, _ in blocks):
        dates = sorted({b["date"] for s, _, b in blocks if s == size})
        lines.append(f"- `{size}`: run(s) started {', '.join(dates)}")
    lines += ["", "## Targets", "",
              "| scenario | size | compared | baseline median (s) | Tandem median (s) | ratio "
              "| peak memory (MiB) | target | verdict | date |",
              "|---|---|---|---:|---:|---:|---:|---|---|---|"]
    dates = {(s, sc): b["date"][:16] for s, sc, b in blocks}
    for v in verdicts(store):
        mark = "ℹ️" if v.target.startswith("(info)") else {True: "✅", False: "❌",
                                                            None: "⚠️"}[v.met]
        lines.append(
            f"| {v.scenario} | {v.size} | {v.what} | {_fmt(v.baseline_s)} | "
            f"{_fmt(v.tandem_s)} | {_fmt(v.ratio, 'x')} | {_fmt(v.peak_mib)} | {v.target} | "
            f"{mark} {v.detail.replace('|', '/')} | {dates.get((v.size, v.scenario), '')} |")
    if chart is not None and chart.exists():
        lines += ["", f"![median seconds per step]({chart.name})", ""]
    lines += ["", "## Every step", "",
              "| scenario | size | step | role | median (s) | runs (s) | peak RSS (MiB) "
              "| tree (MiB) | status | note |",
              "|---|---|---|---|---:|---|---:|---:|---|---|"]
    for size, sc, block in blocks:
        for s in block["steps"]:
            note = s.get("note") or ""
            if s["status"] != "ok":
                note = f"{note} {str(s.get('error') or '')[:300]}".strip()
            inp = (s.get("details") or {}).get("input")
            if inp and inp not in note:
                note = f"{inp}. {note}".strip(" .")
            runs = ", ".join(f"{x:.1f}" for x in s.get("runs_s") or [])
            lines.append(
                f"| {sc} | {size} | {s['step']} | {s['role']} | {_fmt(s.get('median_s'))} | "
                f"{runs} | {_fmt(s.get('peak_rss_mib'))} | {_fmt(s.get('peak_tree_mib'))} | "
                f"{s['status']} | {note.replace('|', '/').replace(chr(10), ' ')} |")
    if notes:
        lines += ["", "## Notes", "", notes.strip(), ""]
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_chart(store: dict, path: Path) -> Path | None:
    """A horizontal bar chart of median seconds per step (log scale), one panel per size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return None
    blocks = _blocks(store)
    sizes = list(dict.fromkeys(s for s, _, _ in blocks))
    if not sizes:
        return None
    panels = []
    for size in sizes:
        rows = [(f"{sc}: {s['step']}", s["median_s"], s["role"]) for sz, sc, b in blocks
                if sz == size for s in b["steps"] if s.get("median_s")]
        if rows:
            panels.append((size, rows))
    if not panels:
        return None
    height = sum(0.28 * len(r) + 0.9 for _, r in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, max(height, 2.5)), squeeze=False,
                             gridspec_kw={"height_ratios": [len(r) + 2 for _, r in panels]})
    colours = {"baseline": "#8c8c8c", "tandem": "#1f77b4", "info": "#aec7e8"}
    for ax, (size, rows) in zip(axes[:, 0], panels, strict=True):
        labels = [r[0] for r in rows][::-1]
        values = [r[1] for r in rows][::-1]
        ax.barh(labels, values, color=[colours.get(r[2], "#1f77b4") for r in rows][::-1])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"size {size}: median seconds (grey baseline, blue Tandem, "
                     "light blue info)", fontsize=9)
        ax.tick_params(labelsize=7)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.1f}", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, format=path.suffix.lstrip("."))
    plt.close(fig)
    return path


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None
