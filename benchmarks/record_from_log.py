"""Fold the step lines of a benchmark run's log into the report's JSON store.

    python -m benchmarks.record_from_log LOG --size large [--out docs/performance.md]

A run that is stopped before it ends (the machine needed elsewhere) writes no report, but its
log already holds each finished step's median and peak memory (``[bench]   STEP: ok median
S s, peak M MiB``). This records those steps, marked as taken from the log (no per-run
details), so the report can judge them; scenarios the log did not finish are left as they
were.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

from benchmarks import report
from benchmarks.harness import REPO_ROOT, StepResult

SCENARIO = re.compile(r"^\[bench\] (\w+) (\w+) \.\.\.$")
STEP = re.compile(r"^\[bench\]   (.+): ok median ([\d.]+) s, peak ([\d.]+|None) MiB")
DONE = re.compile(r"^\[bench\] (\w+) done in")
BASELINES = {"duckdb read_csv", "duckdb read_csv, read_json, fastexcel", "pandas + GX",
             "ingest + aggregate, direct"}


def steps_from_log(text: str, size: str) -> dict[str, list[StepResult]]:
    """Finished scenarios of ``size`` in the log: scenario -> its steps."""
    out: dict[str, list[StepResult]] = {}
    current, steps = None, []
    for line in text.splitlines():
        if m := SCENARIO.match(line):
            current, steps = (m.group(2) if m.group(1) == size else None), []
        elif current and (m := STEP.match(line)):
            secs, peak = float(m.group(2)), m.group(3)
            steps.append(StepResult(
                current, size, m.group(1), "baseline" if m.group(1) in BASELINES else "tandem",
                runs_s=[secs], median_s=secs,
                peak_rss_mib=None if peak == "None" else float(peak),
                note="from the run's log (the run was stopped before its report)"))
        elif current and (m := DONE.match(line)) and m.group(1) == current:
            out[current] = steps
            current = None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", type=Path)
    ap.add_argument("--size", required=True)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "performance.md")
    args = ap.parse_args(argv)
    results = steps_from_log(args.log.read_text(encoding="utf-8"), args.size)
    machine = report.machine_info()
    started = dt.datetime.fromtimestamp(args.log.stat().st_mtime).astimezone().isoformat(
        timespec="seconds")
    report.merge(args.out.with_suffix(".json"), args.size, machine, started, results)
    print(json.dumps({name: [s.step for s in steps] for name, steps in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
