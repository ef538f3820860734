"""Why a row was set aside, in words: each failing rule's reason template filled with the
failing row's values (never its client id: the staged rows hold only the pseudonym)."""

from __future__ import annotations

import string
from typing import Any

import polars as pl

from tandem.quality.rules import partial_format
from transforms.staging import ROW_ID


def _shown(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def render_reasons(failed: pl.DataFrame, staged: pl.DataFrame) -> pl.DataFrame:
    """Fill each failure's reason (and rule label) with the failing row's values."""
    if failed.is_empty():
        return failed.drop("template").with_columns(reason=pl.lit(None, pl.String))
    # Only the columns the templates name: a file whose every row fails renders millions.
    named = {f for t in (*failed["template"].unique(), *failed["rule"].unique())
             for _, f, _, _ in string.Formatter().parse(t or "") if f}
    wanted = [ROW_ID, *(c for c in staged.columns
                        if c in named and c not in (ROW_ID, "client_key"))]
    rows = failed.join(staged.select(wanted), on=ROW_ID, how="left")
    reasons, rules = [], []
    for rec in rows.iter_rows(named=True):  # failures only: few rows
        values = {k: _shown(v) for k, v in rec.items()}
        reasons.append(partial_format(rec["template"], values))
        rules.append(partial_format(rec["rule"], values))
    return failed.drop("template").with_columns(
        reason=pl.Series(reasons, dtype=pl.String), rule=pl.Series(rules, dtype=pl.String))
