"""Caps on what is kept of one value, so a 20 MB cell does not travel whole.

A canonical value is an id, a date, a number or a code: a few dozen characters. A value
longer than :data:`MAX_VALUE_CHARS` is cut to that many characters followed by
``…[cut: 20,971,520 characters]`` (its length), and its row gets a ``reader_issue``
naming the column, so the ``record_readable`` rule quarantines it rather than loading an
altered value. The quarantine's reason and raw values then hold the cut value only.
"""

from __future__ import annotations

import polars as pl

MAX_VALUE_CHARS = 1_000
_CUT_BEFORE, _CUT_AFTER = "…[cut: ", " characters]"


def _thousands(n: pl.Expr) -> pl.Expr:
    """An integer expression as text with thousands separators (20,971,520)."""
    return (n.cast(pl.String).str.reverse().str.replace_all(r"(\d{3})", "${1},")
            .str.reverse().str.strip_chars_start(","))


def cap_values(frame: pl.DataFrame, max_chars: int = MAX_VALUE_CHARS,
               issue_column: str = "reader_issue") -> tuple[pl.DataFrame, dict[str, int]]:
    """``frame`` with every text value longer than ``max_chars`` cut, and per column how
    many values were cut. Rows with a cut value get ``issue_column`` set (appended to an
    issue already there). Columns whose longest value is within the cap (in bytes, which
    bounds characters) are not touched: the usual case costs one ``max`` per column."""
    text_cols = [c for c, t in frame.schema.items() if t == pl.String]
    if not text_cols or frame.is_empty():
        return frame, {}
    longest = frame.select(pl.col(c).str.len_bytes().max() for c in text_cols).row(0)
    over = [c for c, n in zip(text_cols, longest, strict=True) if n is not None
            and n > max_chars]
    if not over:
        return frame, {}
    flag = {c: f"__cut_{i}" for i, c in enumerate(over)}
    work = frame.with_columns((pl.col(c).str.len_chars() > max_chars).fill_null(False)
                              .alias(flag[c]) for c in over)
    counts = {c: n for c in over if (n := int(work[flag[c]].sum()))}
    if not counts:
        return frame, {}
    # the note is built from the original lengths, before the values are replaced
    note = pl.lit("a value is far longer than any survey answer and was cut to "
                  f"{max_chars:,} characters: ") + pl.concat_str(
        [pl.when(pl.col(flag[c])).then(pl.lit(f"{c} (") + _thousands(pl.col(c).str.len_chars())
                                       + pl.lit(" characters)")) for c in counts],
        separator=", ", ignore_nulls=True)
    current = pl.col(issue_column) if issue_column in frame.columns else pl.lit(None, pl.String)
    any_cut = pl.any_horizontal(pl.col(flag[c]) for c in counts)
    work = work.with_columns(
        pl.when(any_cut & current.is_null()).then(note)
        .when(any_cut).then(current + pl.lit("; ") + note)
        .otherwise(current).alias(issue_column))
    cut = []
    for c in {*counts, issue_column}:
        n = pl.col(c).str.len_chars()
        cut.append(pl.when(n > max_chars).then(pl.concat_str([
            pl.col(c).str.slice(0, max_chars), pl.lit(_CUT_BEFORE), _thousands(n),
            pl.lit(_CUT_AFTER)])).otherwise(pl.col(c)).alias(c))
    return work.with_columns(cut).drop(flag.values()), counts
