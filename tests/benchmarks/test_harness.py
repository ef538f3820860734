"""The benchmark harness never rots: ``small`` end to end into a temporary report.

No timing assertions: only that the steps ran, were measured from outside, and landed
in the Markdown and JSON report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench
from benchmarks import report
from benchmarks.harness import StepFailed, StepResult, measure, run_step


def test_run_step_measures_the_childs_memory_from_the_os() -> None:
    code = "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); print('{\"ok\": 1}')"
    m = run_step([sys.executable, "-c", code])
    assert m.returncode == 0
    assert m.peak_rss_mib > 150  # ru_maxrss of the child, not of this process
    assert m.stdout.strip() == '{"ok": 1}'


def test_a_failing_step_is_reported_not_raised(tmp_path: Path) -> None:
    with pytest.raises(StepFailed):
        run_step([sys.executable, "-c", "import sys; sys.exit(7)"])
    res = measure("x", "small", "boom", "tandem",
                  lambda i: [sys.executable, "-c", "raise SystemExit(3)"], repeat=2,
                  logdir=tmp_path)
    assert res.status == "failed" and "exit code 3" in (res.error or "")


def test_a_failing_scenario_does_not_stop_the_others(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx):  # noqa: ANN001, ANN202
        raise RuntimeError("broken on purpose")

    def fine(ctx):  # noqa: ANN001, ANN202
        return [StepResult("generate", ctx.size, "tandem generate", "tandem", runs_s=[1.0],
                           median_s=1.0, peak_rss_mib=10.0)]

    monkeypatch.setattr(bench, "registry", lambda: {"ingest": broken, "generate": fine})
    out = tmp_path / "performance.md"
    code = bench.main(["--size", "small", "--only", "ingest", "generate", "--out", str(out),
                       "--workdir", str(tmp_path / "work")])
    assert code == 1
    store = json.loads(out.with_suffix(".json").read_text())
    assert store["results"]["small"]["ingest"]["steps"][0]["status"] == "failed"
    assert "broken on purpose" in store["results"]["small"]["ingest"]["steps"][0]["error"]
    assert store["results"]["small"]["generate"]["steps"][0]["status"] == "ok"
    assert "tandem generate" in out.read_text()


@pytest.mark.timeout(600)
def test_small_ingest_end_to_end(tmp_path: Path) -> None:
    """Data generation, DuckDB and pandas + GX baselines, the served tandem ingest, report."""
    out = tmp_path / "docs" / "performance.md"
    code = bench.main(["--size", "small", "--only", "ingest", "--smoke", "--out", str(out),
                       "--workdir", str(tmp_path / "work")])
    store = json.loads(out.with_suffix(".json").read_text())
    steps = {s["step"]: s for s in store["results"]["small"]["ingest"]["steps"]}
    assert code == 0, {k: s["error"] for k, s in steps.items()}
    assert set(steps) >= {"duckdb read_csv", "pandas + GX", "tandem ingest (served API)"}
    for s in steps.values():
        assert s["status"] == "ok" and s["median_s"] > 0 and s["peak_rss_mib"] > 0
    # same rows in, same rows loaded by the baseline and by Tandem (clean data)
    loaded_gx = steps["pandas + GX"]["details"]["outputs"][0]["rows_loaded"]
    loaded_db = steps["duckdb read_csv"]["details"]["outputs"][0]["rows"]
    assert loaded_gx == loaded_db > 0
    md = out.read_text()
    assert "| ingest | small |" in md and "## Targets" in md
    assert any(v.scenario == "ingest" for v in report.verdicts(store))


def test_a_stopped_runs_finished_steps_are_read_from_its_log() -> None:
    from benchmarks.record_from_log import steps_from_log

    log = "\n".join([
        "[bench] large ingest ...",
        "[bench]   duckdb read_csv: ok median 102.395 s, peak 784.3 MiB",
        "[bench]   tandem ingest (served API): ok median 521.784 s, peak 2206.6 MiB",
        "[bench] ingest done in 754 s",
        "[bench] large aggregate ...",
        "[bench]   aggregate_full: ok median 533.29 s, peak 5690.6 MiB",
        "[bench] large dashboard ...",  # stopped here: aggregate never finished
    ])
    found = steps_from_log(log, "large")
    assert list(found) == ["ingest"]
    duck, served = found["ingest"]
    assert (duck.role, duck.median_s, duck.peak_rss_mib) == ("baseline", 102.395, 784.3)
    assert (served.role, served.median_s) == ("tandem", 521.784)
    assert steps_from_log(log, "reference") == {}
