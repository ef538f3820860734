"""Great Expectations confirms the data contract and writes its result for the report.

What is quarantined is decided by the compiled Polars pass (:mod:`tandem.quality.contract`);
GX then runs the suite built from ``rules.yaml`` (the rules as quality teams read them)
over the rows that failed any rule, and its result must list the same rows for every rule
(:meth:`ContractValidator.confirm`). Every row-wise rule gives a row the same verdict
whatever rows surround it, and a repeated key's copies all fail uniqueness, so the failing
rows alone give GX's full result for them. GX runs on a pandas frame (its SQL path returns
no rows on DuckDB: GX issues #10738, #11579), reached from Polars via Arrow. Importing GX
and making a context cost seconds, so one context serves the whole process, the import
starts early in a background thread, and nothing imports GX unless a report is made.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from typing import Any

import polars as pl

from tandem.quality.rules import RuleSpec, suite_key
from transforms.staging import ROW_ID


class ContractDisagreement(RuntimeError):
    """GX's result does not list the rows the compiled contract quarantined."""


class ContractValidator:
    """One GX context per process; one suite per distinct set of expectations (with the
    contract values kept in columns, one for every clinic), built on first use."""

    def __init__(self) -> None:
        import great_expectations as gx  # slow import: only when a report is made

        self._gx = gx
        self._lock = threading.Lock()
        self.context = gx.get_context(mode="ephemeral")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = self.context.data_sources.add_pandas("tandem_batches")
        self._asset = source.add_dataframe_asset("staged_rows")
        self._batch_definition = self._asset.add_batch_definition_whole_dataframe("batch")
        self._definitions: dict[str, Any] = {}

    def _definition(self, specs: list[RuleSpec]) -> Any:
        """The GX validation definition for these expectations (made once)."""
        gx = self._gx
        key = suite_key(specs)
        if key not in self._definitions:
            suite = gx.ExpectationSuite(name=f"contract-{key}")
            for spec in specs:
                cls = _expectation_class(gx, spec.expectation_type)
                kwargs = {k: _gx_value(v) for k, v in spec.kwargs.items()}
                suite.add_expectation(cls(**kwargs, meta={"rule": spec.rule}))
            suite = self.context.suites.add(suite)
            self._definitions[key] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"validate-{key}", data=self._batch_definition,
                                        suite=suite)
            )
        return self._definitions[key]

    def confirm(self, specs: list[RuleSpec], failing: pl.DataFrame, hits: pl.DataFrame,
                rows: int) -> tuple[dict[str, Any], pl.DataFrame]:
        """Run the suite on the rows the compiled pass failed; check GX lists the same.

        ``failing`` holds those rows (the rule columns, ``row_id`` and ``source_ref``),
        ``hits`` the compiled pass's (row_id, _rule) pairs, ``rows`` how many rows it
        checked. Returns GX's result without its per-row lists (the report's size stays
        bounded) and the (row_id, _rule, source_ref) GX listed. Raises
        :class:`ContractDisagreement` if GX lists other rows for any rule."""
        with self._lock:
            vd = self._definition(specs)
            frame = _to_pandas(_slim(failing, specs))
            result = vd.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "COMPLETE",
                               "unexpected_index_column_names": [ROW_ID, "source_ref"]},
            )
            del frame
        listed: list[tuple[int, str, Any]] = []
        for res in result.results:
            rule = res.expectation_config.meta["rule"]
            error = _raised(res.exception_info)
            if error:
                raise RuntimeError(f"data contract rule {rule} could not run: {error}")
            listed.extend((int(r[ROW_ID]), rule, r.get("source_ref"))
                          for r in res.result.get("unexpected_index_list") or [])
            _compact_result(res.result)  # before serialising: a list per failing row
        gx_hits = pl.DataFrame(listed, schema={ROW_ID: pl.Int64, "_rule": pl.String,
                                               "source_ref": pl.String}, orient="row")
        _agree(gx_hits, hits)
        report = _compact(result.to_json_dict())
        report.setdefault("meta", {})["tandem"] = {
            "rows_checked": rows, "rows_given_to_gx": failing.height,
            "how": "every rule on every row by the compiled contract (Polars); Great "
                   "Expectations ran the suite on the rows that failed any rule and "
                   "listed the same rows for every rule"}
        return report, gx_hits.sort("_rule", ROW_ID)


def _agree(gx_hits: pl.DataFrame, hits: pl.DataFrame) -> None:
    """Raise unless GX listed exactly the compiled pass's (row, rule) pairs."""
    ours = hits.select(ROW_ID, "_rule")
    theirs = gx_hits.select(ROW_ID, "_rule")
    only_ours = ours.join(theirs, on=[ROW_ID, "_rule"], how="anti")
    only_gx = theirs.join(ours, on=[ROW_ID, "_rule"], how="anti")
    if only_ours.height or only_gx.height or ours.height != theirs.height:
        rules = sorted({*only_ours["_rule"].to_list(), *only_gx["_rule"].to_list()})
        raise ContractDisagreement(
            f"Great Expectations and the compiled contract disagree on rule(s) "
            f"{', '.join(rules) or '(repeated rows)'}: {only_ours.height} row(s) quarantined "
            f"that GX passes, {only_gx.height} row(s) GX fails that were not quarantined")


_NULL_CHECKS = {"expect_column_values_to_be_null", "expect_column_values_to_not_be_null"}


def _slim(frame: pl.DataFrame, specs: list[RuleSpec]) -> pl.DataFrame:
    """Text columns as GX needs them: a text column the suite only null-checks becomes a
    float marker (1.0 or null), one it also only compares for equality in a compound key
    becomes its category code (null stays null). pandas then holds 8 bytes a row instead of
    a Python string, and GX's checks run on floats. Values never reach the report (it keeps
    counts only), and reasons are rendered from the staged rows."""
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
    """Hand the frame to GX in the dtypes its pandas checks vectorise (int64, float64 and
    datetime64[ns]); others (int16, datetime64[ms]) fall back to a Python call per row."""
    casts = []
    for name, dtype in staged.schema.items():
        if dtype.is_integer():
            casts.append(pl.col(name).cast(pl.Float64 if staged[name].null_count() else pl.Int64))
        elif dtype == pl.Date:
            casts.append(pl.col(name).cast(pl.Datetime("ns")))
    return staged.with_columns(casts).to_pandas()


_ROW_LISTS = ("unexpected_list", "unexpected_index_list", "partial_unexpected_list",
              "partial_unexpected_index_list", "partial_unexpected_counts",
              "unexpected_index_query")


def _compact_result(r: dict[str, Any] | None) -> None:
    """Drop one expectation result's per-row lists (a file whose every row fails would
    otherwise serialise millions of entries into its report)."""
    for key in _ROW_LISTS:
        (r or {}).pop(key, None)


def _compact(result: dict[str, Any]) -> dict[str, Any]:
    """Keep the report small: row numbers of failures are in the quarantine table already."""
    for res in result.get("results", []):
        _compact_result(res.get("result"))
    return result


def _gx_value(value: Any) -> Any:
    """Dates as pandas Timestamps: GX compares them with the datetime64 columns."""
    import pandas as pd

    if isinstance(value, dt.date):
        return pd.Timestamp(value)
    return value


def _raised(info: dict[str, Any] | None) -> str | None:
    """GX reports exceptions flat or keyed by metric; either way, say what failed."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for sub in info.values():
        if isinstance(sub, dict) and sub.get("raised_exception"):
            return sub.get("exception_message") or "unknown error"
    return None


def _expectation_class(gx: Any, expectation_type: str) -> type:
    name = "".join(part.capitalize() for part in expectation_type.split("_"))
    try:
        return getattr(gx.expectations, name)
    except AttributeError as exc:
        raise ValueError(f"unknown Great Expectations expectation {expectation_type!r}") from exc


_VALIDATOR: ContractValidator | None = None


_VALIDATOR_LOCK = threading.Lock()


def get_validator() -> ContractValidator:
    """The process-wide validator (GX import and context are built once)."""
    global _VALIDATOR
    with _VALIDATOR_LOCK:
        if _VALIDATOR is None:
            _VALIDATOR = ContractValidator()
        return _VALIDATOR


def warm_up_validator() -> None:
    """Build the validator in a background thread, if nobody has yet.

    Importing GX and making its context takes seconds of mostly Python and file reads;
    the ingest starts this before reading its first files, whose Polars work runs
    outside the GIL, so the two overlap on a multi-core machine. An error here is left
    for :func:`get_validator` to raise in the caller's thread."""
    if _VALIDATOR is not None:
        return

    def build() -> None:
        with contextlib.suppress(Exception):
            get_validator()

    threading.Thread(target=build, name="gx-warm-up", daemon=True).start()
