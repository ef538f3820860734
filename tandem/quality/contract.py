"""Run the data contract on staged files: Polars decides, Great Expectations confirms.

:func:`check_many` evaluates every rule of the files' suites on every row in one
vectorised Polars pass (:mod:`tandem.quality.compiled_rules`): that decides what is
quarantined, and imports nothing of GX. Each outcome's GX result (the batch report) is
made only when asked for (``outcome.result_json``): GX then runs the same suite, built
from ``rules.yaml``, over the rows that failed any rule (:mod:`tandem.quality.gx_runner`),
once for all the files checked together, and must list exactly the rows the Polars pass
listed, rule by rule, or it raises. See docs/ingest.md, "How the contract is run fast".
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl

from tandem.core.contracts import ClinicContract, Instrument
from tandem.quality.compiled_rules import evaluate, rule_columns
from tandem.quality.outcomes import ValidationOutcome, file_outcome, file_report
from tandem.quality.rules import (
    RuleSpec,
    add_contract_values,
    build_rule_specs,
    load_rules,
    suite_key,
)
from transforms.staging import ROW_ID

#: Failing rows per rule and file kept in the report as GX listed them (by source_ref).
EXAMPLES = 20


class SharedRun:
    """The files of one check that share a suite: their failing rows, and (once asked
    for) the one GX run over those rows that every file's report is cut from."""

    def __init__(self, specs: list[RuleSpec], failing: pl.DataFrame, hits: pl.DataFrame,
                 rows: int) -> None:
        self.specs = specs
        self.failing = failing  # the rows that failed any rule: rule columns + source_ref
        self.hits = hits  # (row_id, _rule) of the Polars pass
        self.rows = rows
        self._confirmed: tuple[dict[str, Any], pl.DataFrame] | None = None

    def confirmed(self) -> tuple[dict[str, Any], pl.DataFrame]:
        """GX's (compacted) result and the (row_id, _rule, source_ref) it listed."""
        if self._confirmed is None:
            from tandem.quality.gx_runner import get_validator

            self._confirmed = get_validator().confirm(self.specs, self.failing, self.hits,
                                                      self.rows)
            self.failing = self.failing.clear()
        return self._confirmed

    def file_report(self, row_ids: pl.DataFrame, counts: dict[str, int],
                    n: int) -> dict[str, Any]:
        report, listed = self.confirmed()
        mine = listed.join(row_ids, on=ROW_ID, how="semi")
        examples: dict[str, list[dict[str, Any]]] = {}
        for rule, ref in mine.select("_rule", "source_ref").iter_rows():
            shown = examples.setdefault(rule, [])
            if len(shown) < EXAMPLES:
                shown.append({"source_ref": ref})
        return file_report(report, counts, n, examples)


def check_many(
    batches: list[tuple[pl.DataFrame, ClinicContract]],
    instruments: dict[str, Instrument],
    as_of: dt.date,
    rules_path: Path,
) -> list[ValidationOutcome]:
    """Check many files' staged rows against their contracts, without GX.

    Each frame's ``row_id`` must be unique across ``batches`` (the caller numbers rows
    globally). Files whose suites are equal (the rules keep contract values out of the
    expectations' arguments, so usually all of them) are evaluated together, as one GX
    run would see them; each file gets its own outcome, with per-file counts, failures and
    reasons, as if it had been checked alone. ``outcome.result_json`` runs GX (once for
    the files checked together) when first read.
    """
    rules = load_rules(rules_path)
    groups: dict[str, list[int]] = {}
    plans: list[list[RuleSpec]] = []
    for i, (_, contract) in enumerate(batches):
        specs = build_rule_specs(rules, contract, instruments, as_of)
        plans.append(specs)
        groups.setdefault(suite_key(specs), []).append(i)
    outcomes: list[ValidationOutcome | None] = [None] * len(batches)
    for members in groups.values():
        specs = plans[members[0]]
        cols = rule_columns(specs)
        frames = [add_contract_values(batches[i][0], batches[i][1], as_of, file_key=i)
                  for i in members]
        extra = ["source_ref"] if "source_ref" not in cols else []
        rows = pl.concat([f.select(*cols, *extra) for f in frames], how="vertical_relaxed")
        hits = evaluate(rows.select(cols), specs)
        failing = rows.join(hits.select(ROW_ID).unique(), on=ROW_ID, how="semi")
        shared = SharedRun(specs, failing, hits, rows.height)
        del rows
        for i, staged in zip(members, frames, strict=True):
            ids = staged.select(ROW_ID)
            mine = hits.join(ids, on=ROW_ID, how="semi")
            outcomes[i] = file_outcome(
                mine, plans[i], batches[i][0],
                lambda counts, n, ids=ids, shared=shared: shared.file_report(ids, counts, n))
    return [o for o in outcomes if o is not None]


def validate_many(
    batches: list[tuple[pl.DataFrame, ClinicContract]],
    instruments: dict[str, Instrument],
    as_of: dt.date,
    rules_path: Path,
) -> list[ValidationOutcome]:
    """:func:`check_many`, with every file's GX result made (and so confirmed) at once."""
    outcomes = check_many(batches, instruments, as_of, rules_path)
    for outcome in outcomes:
        _ = outcome.result_json
    return outcomes
