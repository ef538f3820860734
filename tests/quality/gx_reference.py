"""The data contract as it ran before it was compiled to Polars: the GX suite on every row.

Kept as the reference the compiled contract is checked against
(``test_compiled_rules.py``): the suite built from the rule specs, run by Great
Expectations on a pandas frame of all the rows, the frame made exactly as the ingest made
it then (text columns only null-checked as float markers, key columns as category codes,
integers as int64/float64, dates as datetime64[ns]).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import polars as pl

from tandem.quality.rules import RuleSpec
from transforms.staging import ROW_ID

_NULL_CHECKS = {"expect_column_values_to_be_null", "expect_column_values_to_not_be_null"}
_names = itertools.count()


class ReferenceSuite:
    """GX on every row: (row_id, rule) pairs, rule by rule, as GX lists them."""

    def __init__(self) -> None:
        import great_expectations as gx

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False)
        source = self.context.data_sources.add_pandas("reference")
        asset = source.add_dataframe_asset("rows")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        self._runs: dict[str, Any] = {}

    def _run_for(self, specs: list[RuleSpec]) -> Any:
        key = repr([(s.rule, s.expectation_type, sorted(s.kwargs.items())) for s in specs])
        if key not in self._runs:
            gx = self.gx
            n = next(_names)
            suite = gx.ExpectationSuite(name=f"reference-{n}")
            for spec in specs:
                name = "".join(p.capitalize() for p in spec.expectation_type.split("_"))
                kwargs = {k: _gx_value(v) for k, v in spec.kwargs.items()}
                suite.add_expectation(getattr(gx.expectations, name)(
                    **kwargs, meta={"rule": spec.rule}))
            suite = self.context.suites.add(suite)
            self._runs[key] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"reference-{n}", data=self.batch_definition,
                                        suite=suite))
        return self._runs[key]

    def unexpected(self, frame: pl.DataFrame, specs: list[RuleSpec]) -> dict[str, set[int]]:
        """Per rule, the row ids GX lists as unexpected."""
        result = self._run_for(specs).run(
            batch_parameters={"dataframe": _to_pandas(_slim(frame, specs))},
            result_format={"result_format": "COMPLETE",
                           "unexpected_index_column_names": [ROW_ID]})
        out: dict[str, set[int]] = {}
        for res in result.results:
            info = res.exception_info or {}
            assert not info.get("raised_exception"), info
            out[res.expectation_config.meta["rule"]] = {
                int(r[ROW_ID]) for r in res.result.get("unexpected_index_list") or []}
        return out


def _slim(frame: pl.DataFrame, specs: list[RuleSpec]) -> pl.DataFrame:
    uses: dict[str, set[str]] = {}
    for spec in specs:
        kw = spec.kwargs
        if spec.expectation_type in _NULL_CHECKS and "column" in kw:
            uses.setdefault(kw["column"], set()).add("null")
            continue
        if spec.expectation_type == "expect_compound_columns_to_be_unique":
            for c in kw.get("column_list") or []:
                uses.setdefault(c, set()).add("key")
            continue
        for c in (kw.get("column"), kw.get("column_A"), kw.get("column_B")):
            if c is not None:
                uses.setdefault(c, set()).add("other")
    casts = []
    for name, dtype in frame.schema.items():
        how = uses.get(name, set())
        if dtype != pl.String or not how or "other" in how:
            continue
        if how == {"null"}:
            casts.append(pl.when(pl.col(name).is_null()).then(pl.lit(None, pl.Float64))
                         .otherwise(pl.lit(1.0)).alias(name))
        else:
            casts.append(pl.col(name).cast(pl.Categorical).to_physical().cast(pl.Float64))
    return frame.with_columns(casts) if casts else frame


def _to_pandas(staged: pl.DataFrame) -> Any:
    casts = []
    for name, dtype in staged.schema.items():
        if dtype.is_integer():
            casts.append(pl.col(name).cast(pl.Float64 if staged[name].null_count() else pl.Int64))
        elif dtype == pl.Date:
            casts.append(pl.col(name).cast(pl.Datetime("ns")))
    return staged.with_columns(casts).to_pandas()


def _gx_value(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, dt.date):
        return pd.Timestamp(value)
    return value
