"""One file's validation outcome, cut from a run that validated many files at once: its
failing rows (rule, column, reason), its per-rule counts (what quality teams see per batch)
and its own Great Expectations result (made on demand: GX runs only for a report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from tandem.quality.reasons import render_reasons
from tandem.quality.rules import RuleSpec, base_rule
from transforms.staging import ROW_ID


@dataclass
class ValidationOutcome:
    success: bool
    # One row per (row_id, rule): row_id, rule, column_name, reason
    failures: pl.DataFrame
    # One dict per expectation: rule, expectation_type, column_name, success, counts
    summary: list[dict[str, Any]]
    # Makes this file's GX result (runs GX once for the files validated together).
    gx_report: Callable[[], dict[str, Any]] | None = field(repr=False, default=None)
    _result_json: dict[str, Any] | None = field(repr=False, default=None)

    @property
    def result_json(self) -> dict[str, Any]:
        """This file's Great Expectations result (the report's content). The first access
        imports GX and runs it (for every file validated with this one); the quarantine
        never waits for it."""
        if self._result_json is None:
            self._result_json = self.gx_report() if self.gx_report else {}
        return self._result_json


def file_outcome(hits: pl.DataFrame, specs: list[RuleSpec], staged: pl.DataFrame,
                 gx_report: Callable[[dict[str, int], int], dict[str, Any]] | None = None,
                 ) -> ValidationOutcome:
    """One file's outcome from its failing (row id, rule) pairs of a shared run.

    ``gx_report(counts, n)`` makes the file's GX result given its per-rule failure counts
    and row count (see :func:`file_report`); it is called only when the result is asked for.
    """
    counts = dict(hits.group_by("_rule").len().iter_rows()) if hits.height else {}
    n = staged.height
    summary = []
    for spec in specs:
        bad = counts.get(spec.rule, 0)
        summary.append({
            "rule": base_rule(spec.rule),
            "expectation_type": spec.expectation_type,
            "column_name": spec.column or spec.kwargs.get("column_A"),
            "success": bad == 0,
            "element_count": n,
            "unexpected_count": bad,
        })
    spec_rows = pl.DataFrame(
        [(s.rule, s.label or base_rule(s.rule), s.column or s.kwargs.get("column_A"), s.reason)
         for s in specs],
        schema={"_rule": pl.String, "rule": pl.String, "column_name": pl.String,
                "template": pl.String}, orient="row")
    failed = hits.join(spec_rows, on="_rule", how="left").select(
        ROW_ID, "rule", "column_name", "template")
    return ValidationOutcome(
        success=all(s["success"] for s in summary),
        failures=render_reasons(failed, staged),
        summary=summary,
        gx_report=(lambda: gx_report({s.rule: counts.get(s.rule, 0) for s in specs}, n))
        if gx_report else None,
    )


def file_report(report: dict[str, Any], bad: dict[str, int], n: int,
                examples: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """The shared GX result with one file's counts: what that file's own run would say.

    ``examples`` (per rule, a few of the file's failing rows as GX listed them) become each
    result's ``partial_unexpected_index_list``."""
    out = {k: v for k, v in report.items() if k != "results"}
    results = []
    for res in report.get("results", []):
        r = dict(res)
        rule = ((r.get("expectation_config") or {}).get("meta") or {}).get("rule")
        count = bad.get(rule, 0)
        sub = {k: v for k, v in (r.get("result") or {}).items()
               if k not in ("missing_count", "missing_percent", "unexpected_percent_total",
                            "unexpected_percent_nonmissing")}
        sub.update(element_count=n, unexpected_count=count,
                   unexpected_percent=(100.0 * count / n) if n else None)
        if examples is not None:
            sub["partial_unexpected_index_list"] = examples.get(rule, [])
        r["result"], r["success"] = sub, count == 0
        results.append(r)
    out["results"] = results
    ok = sum(1 for r in results if r["success"])
    out["success"] = ok == len(results)
    stats = dict(out.get("statistics") or {})
    stats.update(evaluated_expectations=len(results), successful_expectations=ok,
                 unsuccessful_expectations=len(results) - ok,
                 success_percent=(100.0 * ok / len(results)) if results else None)
    out["statistics"] = stats
    return out
