"""A failing row's reason: the rule's template filled with that row's values."""

from __future__ import annotations

import polars as pl

from tandem.quality.reasons import render_reasons
from transforms.staging import ROW_ID


def _failed(rows):
    return pl.DataFrame(rows, schema={ROW_ID: pl.Int64, "rule": pl.String,
                                      "column_name": pl.String, "template": pl.String},
                        orient="row")


def test_reason_and_label_are_filled_from_the_failing_row():
    staged = pl.DataFrame({ROW_ID: [1, 2], "instrument": ["ORS", "SRS"], "item": ["2", "9"],
                           "score": [11.0, 3.0], "client_key": ["k1", "k2"]})
    out = render_reasons(_failed([
        (1, "score_in_item_range[{instrument}]", "score", "{instrument} item {item}: {score}"),
        (2, "item_number_in_instrument[{instrument}]", "item", "no item {item}"),
    ]), staged)
    assert out["reason"].to_list() == ["ORS item 2: 11", "no item 9"]  # 11.0 shown as 11
    assert out["rule"].to_list() == ["score_in_item_range[ORS]",
                                     "item_number_in_instrument[SRS]"]


def test_client_pseudonym_is_never_rendered():
    staged = pl.DataFrame({ROW_ID: [1], "client_key": ["secret-pseudonym"]})
    out = render_reasons(_failed([(1, "r", None, "client {client_key}")]), staged)
    assert "secret-pseudonym" not in out["reason"][0]


def test_no_failures_gives_an_empty_frame_with_a_reason_column():
    out = render_reasons(_failed([]), pl.DataFrame({ROW_ID: [1]}))
    assert out.is_empty() and "reason" in out.columns and "template" not in out.columns
