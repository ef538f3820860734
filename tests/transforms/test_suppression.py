"""Small cells are suppressed in one place, shown as suppressed, never as 0."""

from __future__ import annotations

import polars as pl

from transforms.suppression import suppress, suppress_marts


def test_cells_under_min_size_are_nulled_and_flagged():
    df = pl.DataFrame({"clinic_id": ["A", "B"], "n_clients": [9, 10], "rate": [0.0, 0.5]})
    out = suppress(df, 10)
    assert out["suppressed"].to_list() == [True, False]
    assert out["rate"].to_list() == [None, 0.5]         # not 0: unknown
    assert out["n_clients"].to_list() == [None, 10]
    assert out["clinic_id"].to_list() == ["A", "B"]     # the cell label stays


def test_threshold_is_configurable_and_only_dir_marts_are_touched():
    df = pl.DataFrame({"n_clients": [4], "x": [1.0]})
    marts = suppress_marts({"dir_a": df, "episode_measure": df}, min_cell_size=3)
    assert marts["dir_a"]["suppressed"][0] is False
    marts = suppress_marts({"dir_a": df, "episode_measure": df}, min_cell_size=5)
    assert marts["dir_a"]["x"][0] is None and "suppressed" not in marts["episode_measure"].columns
