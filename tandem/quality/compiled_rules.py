"""The data contract compiled to Polars: every rule of every row in one vectorised pass.

Each :class:`~tandem.quality.rules.RuleSpec` (one Great Expectations expectation of the
suite built from ``data_contracts/rules.yaml``) becomes one Polars expression that is true
exactly where GX would list the row in the expectation's ``unexpected_index_list``. All of
them are evaluated in one ``select`` over the staged rows; the rows they flag are what
the ingest quarantines. Great Expectations then re-runs the same suite on those rows only
(:mod:`tandem.quality.gx_runner`): its result must list the same rows per rule, or the
batch is not reported as validated.

GX's pandas semantics, kept here exactly (``tests/quality/test_compiled_rules.py`` checks
them against the GX suite on random frames):

* a value is *missing* when pandas calls it null: null, and NaN in a float column;
* column-map expectations (``..._to_be_in_set``, ``..._to_be_between``) skip missing
  values (never unexpected); ``..._to_be_null`` / ``..._to_not_be_null`` test missingness;
* ``expect_column_pair_values_a_to_be_greater_than_b`` skips rows per ``ignore_row_if``
  (GX's default: both missing); a row it keeps with a missing side is unexpected;
* ``expect_compound_columns_to_be_unique`` flags every row of a repeated key (all copies,
  missing values equal to each other), skipping rows per ``ignore_row_if`` (GX's default:
  all values missing);
* a ``row_condition`` (``for_each_instrument``, ``only_where_present``) keeps the rows it
  selects; the others are never unexpected.

Only the expectation types ``rules.yaml`` uses are compiled (:data:`SUPPORTED`); any
other type, argument, or a free ``where`` condition raises :class:`UnsupportedRule`
naming it, before any row is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import polars as pl

from tandem.quality.rules import RuleSpec
from transforms.staging import ROW_ID

_Compiler = Callable[[dict[str, Any], dict[str, pl.DataType]], pl.Expr]


class UnsupportedRule(ValueError):
    """A rule the compiled contract cannot run (so it would not be checked at all)."""


def _missing(column: str, schema: dict[str, pl.DataType]) -> pl.Expr:
    """What pandas (and so GX) counts as missing: null, or NaN in a float column."""
    expr = pl.col(column).is_null()
    dtype = schema.get(column)
    if dtype is not None and dtype.is_float():
        expr = expr | pl.col(column).is_nan()
    return expr


def _present(column: str, schema: dict[str, pl.DataType]) -> pl.Expr:
    return ~_missing(column, schema)


def _to_be_null(kw: dict[str, Any], schema: dict[str, pl.DataType]) -> pl.Expr:
    return _present(kw["column"], schema)


def _to_not_be_null(kw: dict[str, Any], schema: dict[str, pl.DataType]) -> pl.Expr:
    return _missing(kw["column"], schema)


def _to_be_in_set(kw: dict[str, Any], schema: dict[str, pl.DataType]) -> pl.Expr:
    col = kw["column"]
    return _present(col, schema) & ~pl.col(col).is_in(list(kw["value_set"])).fill_null(False)


def _to_be_between(kw: dict[str, Any], schema: dict[str, pl.DataType]) -> pl.Expr:
    col = kw["column"]
    lo, hi = kw.get("min_value"), kw.get("max_value")
    if lo is None and hi is None:
        raise UnsupportedRule("expect_column_values_to_be_between needs min_value or max_value")
    inside = pl.lit(True)
    if lo is not None:
        inside = inside & (pl.col(col) >= lo)
    if hi is not None:
        inside = inside & (pl.col(col) <= hi)
    return _present(col, schema) & ~inside.fill_null(False)


_PAIR_IGNORE = {"both_values_are_missing", "either_value_is_missing", "neither"}


def _a_greater_than_b(kw: dict[str, Any], schema: dict[str, pl.DataType]) -> pl.Expr:
    a, b = kw["column_A"], kw["column_B"]
    ignore = kw.get("ignore_row_if", "both_values_are_missing")
    if ignore not in _PAIR_IGNORE:
        raise UnsupportedRule(f"ignore_row_if={ignore!r} is not supported")
    if ignore == "either_value_is_missing":
        skipped = _missing(a, schema) | _missing(b, schema)
    elif ignore == "both_values_are_missing":
        skipped = _missing(a, schema) & _missing(b, schema)
    else:
        skipped = pl.lit(False)
    holds = pl.col(a) >= pl.col(b) if kw.get("or_equal") else pl.col(a) > pl.col(b)
    # pandas compares NaN as False (Polars orders NaN last): a missing side never holds
    holds = holds.fill_null(False) & _present(a, schema) & _present(b, schema)
    return ~skipped & ~holds


_COMPOUND_IGNORE = {"all_values_are_missing", "any_value_is_missing", "never"}


def _compound_unique(kw: dict[str, Any], schema: dict[str, pl.DataType]) -> pl.Expr:
    cols = list(kw["column_list"])
    ignore = kw.get("ignore_row_if", "all_values_are_missing")
    if ignore not in _COMPOUND_IGNORE:
        raise UnsupportedRule(f"ignore_row_if={ignore!r} is not supported")
    missing = [_missing(c, schema) for c in cols]
    if ignore == "all_values_are_missing":
        skipped = pl.all_horizontal(missing)
    elif ignore == "any_value_is_missing":
        skipped = pl.any_horizontal(missing)
    else:
        skipped = pl.lit(False)
    # A skipped row's key holds a missing value no kept row's key holds (or, for
    # all_values_are_missing, only missing values), so it never pairs with a kept row.
    # NaN is made null first: pandas' duplicated() treats all missing values as equal.
    key = pl.struct([pl.when(m).then(None).otherwise(pl.col(c)).alias(c)
                     for c, m in zip(cols, missing, strict=True)])
    return ~skipped & key.is_duplicated()


#: Expectation type -> (compiler of its "row is unexpected" expression, arguments it reads)
SUPPORTED: dict[str, tuple[_Compiler, frozenset[str]]] = {
    "expect_column_values_to_be_null": (_to_be_null, frozenset({"column"})),
    "expect_column_values_to_not_be_null": (_to_not_be_null, frozenset({"column"})),
    "expect_column_values_to_be_in_set": (_to_be_in_set, frozenset({"column", "value_set"})),
    "expect_column_values_to_be_between": (
        _to_be_between, frozenset({"column", "min_value", "max_value"})),
    "expect_column_pair_values_a_to_be_greater_than_b": (
        _a_greater_than_b, frozenset({"column_A", "column_B", "or_equal", "ignore_row_if"})),
    "expect_compound_columns_to_be_unique": (
        _compound_unique, frozenset({"column_list", "ignore_row_if"})),
}

_CONDITION_ARGS = frozenset({"row_condition", "condition_parser"})


def _condition(spec: RuleSpec, schema: dict[str, pl.DataType]) -> pl.Expr | None:
    """The rows a ``row_condition`` keeps, for the conditions ``rules.py`` writes itself
    (``for_each_instrument``, ``only_where_present``); a free pandas ``where`` is refused."""
    text = spec.kwargs.get("row_condition")
    if not text:
        return None
    parts, keep = [], []
    if spec.instrument is not None:
        parts.append(f'instrument=="{spec.instrument}"')
        keep.append((pl.col("instrument") == spec.instrument).fill_null(False))
    if spec.only_where_present:
        parts.append(f"{spec.only_where_present}.notna()")
        keep.append(_present(spec.only_where_present, schema))
    if " and ".join(parts) != text:
        raise UnsupportedRule(
            f"rule {spec.rule}: the row condition {text!r} is a free pandas condition "
            "('where'), which the compiled contract does not run; use a derived column "
            "(transforms/staging.py) and for_each_instrument / only_where_present")
    return pl.all_horizontal(keep)


def compile_rule(spec: RuleSpec, schema: dict[str, pl.DataType]) -> pl.Expr:
    """A boolean expression, never null: true where ``spec`` finds the row unexpected.

    ``schema`` is the staged frame's (NaN counts as missing in float columns)."""
    entry = SUPPORTED.get(spec.expectation_type)
    if entry is None:
        raise UnsupportedRule(
            f"rule {spec.rule}: expectation type {spec.expectation_type!r} is not supported "
            f"by the compiled contract (supported: {', '.join(sorted(SUPPORTED))})")
    compiler, allowed = entry
    extra = set(spec.kwargs) - allowed - _CONDITION_ARGS
    if extra:
        raise UnsupportedRule(
            f"rule {spec.rule}: argument(s) {', '.join(sorted(extra))} of "
            f"{spec.expectation_type} are not supported by the compiled contract")
    needed = [c for k in ("column", "column_A", "column_B") if (c := spec.kwargs.get(k))]
    needed += list(spec.kwargs.get("column_list") or [])
    absent = [c for c in needed if c not in schema]
    if absent:
        raise UnsupportedRule(f"rule {spec.rule}: no column {', '.join(absent)} in the staged rows")
    unexpected = compiler(spec.kwargs, schema)
    condition = _condition(spec, schema)
    if condition is not None:
        unexpected = condition & unexpected
    return unexpected.fill_null(False)


def rule_columns(specs: Iterable[RuleSpec]) -> list[str]:
    """The columns the rules read, and the row id."""
    cols = [ROW_ID]
    for spec in specs:
        kw = spec.kwargs
        names = [kw.get("column"), kw.get("column_A"), kw.get("column_B"),
                 *(kw.get("column_list") or [])]
        if kw.get("row_condition"):
            names += ["instrument", spec.only_where_present]
        for c in names:
            if c is not None and c not in cols:
                cols.append(c)
    return cols


def evaluate(frame: pl.DataFrame, specs: list[RuleSpec]) -> pl.DataFrame:
    """Every rule on every row in one pass: one row per (row id, rule) that fails.

    Returns ``row_id`` (Int64) and ``_rule`` (the spec's rule name), ordered by rule then
    row id. ``frame`` holds the rule columns (see :func:`rule_columns`) of all the rows a
    GX run would see at once (compound keys are unique over all of them)."""
    schema = dict(frame.schema)
    exprs = [compile_rule(s, schema).alias(f"_f{i}") for i, s in enumerate(specs)]
    flags = frame.lazy().select(pl.col(ROW_ID).cast(pl.Int64), *exprs)
    if not specs:
        return pl.DataFrame(schema={ROW_ID: pl.Int64, "_rule": pl.String})
    failing = flags.filter(pl.any_horizontal([pl.col(f"_f{i}") for i in range(len(specs))]))
    names = pl.DataFrame({"_flag": [f"_f{i}" for i in range(len(specs))],
                          "_rule": [s.rule for s in specs],
                          "_order": list(range(len(specs)))},
                         schema={"_flag": pl.String, "_rule": pl.String, "_order": pl.Int64})
    return (failing.unpivot(index=ROW_ID, variable_name="_flag", value_name="_bad")
            .filter(pl.col("_bad"))
            .join(names.lazy(), on="_flag")
            .sort("_order", ROW_ID)
            .select(ROW_ID, "_rule")
            .collect())
