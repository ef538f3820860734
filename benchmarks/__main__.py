"""``python -m benchmarks``: every scenario with its baseline, one report.

    python -m benchmarks --size small|reference|large [--only SCENARIO ...] [--repeat N]
                         [--out docs/performance.md] [--timeout SECONDS] [--quick] [--smoke]
                         [--render-only]

Generates (or reuses) the data of the size, runs each scenario in isolation (a failing
scenario is reported with its error; the others still run), and merges the results into
``--out`` and a JSON copy beside it (``performance.json``), with a chart
(``performance.svg``). Notes for the report are kept in ``benchmarks/NOTES.md``.
Exit code 0 even when targets are missed (no timing assertions); 1 if a scenario failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from benchmarks import report
from benchmarks.data import DATA_ROOT, SIZES
from benchmarks.harness import REPO_ROOT, StepResult
from benchmarks.scenarios import DEFAULT_SCENARIOS, Context, registry

DEFAULT_REPEAT = {"small": 1, "reference": 3, "large": 1}
NOTES = Path(__file__).resolve().parent / "NOTES.md"


def main(argv: list[str] | None = None) -> int:
    scenarios = registry()
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="small")
    ap.add_argument("--only", nargs="+", choices=list(scenarios), metavar="SCENARIO",
                    help=f"run only these ({', '.join(scenarios)})")
    ap.add_argument("--repeat", type=int, help="runs per step (default: small 1, "
                    "reference 3, large 1)")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "performance.md")
    ap.add_argument("--timeout", type=float, default=None, help="per step run, seconds")
    ap.add_argument("--quick", action="store_true",
                    help="skip the temporary-server variant of tandem ingest")
    ap.add_argument("--smoke", action="store_true",
                    help="CI run: also skip process_file without Prefect")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch folder (default benchmarks/.data/<size>/run)")
    ap.add_argument("--render-only", action="store_true",
                    help="only re-write --out (and the chart) from its JSON and NOTES.md")
    args = ap.parse_args(argv)
    out: Path = args.out
    if args.render_only:
        store = json.loads(out.with_suffix(".json").read_text())
        _render(store, out)
        return 0

    names = args.only or DEFAULT_SCENARIOS[args.size]
    workdir = args.workdir or DATA_ROOT / args.size / "run"
    shutil.rmtree(workdir, ignore_errors=True)
    ctx = Context(size=args.size, repeat=args.repeat or DEFAULT_REPEAT[args.size],
                  workdir=workdir, timeout=args.timeout, quick=args.quick,
                  smoke=args.smoke)
    machine = report.machine_info()
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    results: dict[str, list[StepResult]] = {}
    failed = False
    for name in names:
        t0 = time.perf_counter()
        print(f"[bench] {args.size} {name} ...", file=sys.stderr, flush=True)
        try:
            steps = scenarios[name](ctx)
        except Exception as exc:  # isolate: report and go on
            steps = [StepResult(name, args.size, name, "tandem", status="failed",
                                error=f"{type(exc).__name__}: {exc}\n"
                                      f"{traceback.format_exc(limit=3)}"[:3000])]
        results[name] = steps
        failed |= any(s.status != "ok" for s in steps)
        for s in steps:
            print(f"[bench]   {s.step}: {s.status} median {s.median_s} s, peak "
                  f"{s.peak_rss_mib} MiB{' ' + (s.error or '')[:200] if s.error else ''}",
                  file=sys.stderr, flush=True)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr,
              flush=True)
    machine["load_average_end"] = [round(x, 2) for x in __import__("os").getloadavg()]

    out.parent.mkdir(parents=True, exist_ok=True)
    store = report.merge(out.with_suffix(".json"), args.size, machine, started, results)
    _render(store, out)
    print(json.dumps({"report": str(out), "failed": failed}), flush=True)
    shutil.rmtree(workdir / "homes", ignore_errors=True)
    return 1 if failed else 0


def _render(store: dict, out: Path) -> None:
    chart = report.write_chart(store, out.with_suffix(".svg"))
    notes = NOTES.read_text(encoding="utf-8") if NOTES.exists() else ""
    report.write_markdown(store, out, chart, notes)


if __name__ == "__main__":
    sys.exit(main())
