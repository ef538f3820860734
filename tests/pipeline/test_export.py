"""``tandem export episodes``: every episode and measure with the method, the index and the
category, and the NHS Talking Therapies rows; booleans as true/false."""

from __future__ import annotations

import duckdb
import polars as pl

from tandem.core.contracts import load_instruments
from tandem.pipeline.export import export_episodes
from tests.transforms.conftest import answers, day, frame
from transforms.marts import EXPORT_COLUMNS, MartParams, build_marts


def test_export_gains_method_index_and_category(tmp_path):
    instruments = load_instruments()
    rows = (answers("ORS", [0.8] * 4, date=day(0), client="a")              # 3.2
            + answers("ORS", [2.0, 2.0, 2.1, 2.1], date=day(7), session=2, client="a")  # 8.2
            + answers("ORS", [5] * 4, date=day(0), client="b")              # one score
            + answers("PHQ9", [2] * 9, date=day(0), client="c")
            + answers("GAD7", [2] * 7, date=day(0), client="c")
            + answers("PHQ9", [0] * 9, date=day(7), session=2, client="c")
            + answers("GAD7", [0] * 7, date=day(7), session=2, client="c"))
    out = build_marts(frame(rows), instruments, MartParams(as_of=day(400)))["episode_outcome"]
    con = duckdb.connect()
    con.register("f", out.to_arrow())
    con.execute("CREATE TABLE episode_outcome AS SELECT * FROM f")
    assert export_episodes(con, tmp_path / "episodes.csv") == 5
    csv = pl.read_csv(tmp_path / "episodes.csv", infer_schema_length=0)
    assert csv.columns == EXPORT_COLUMNS
    assert {"change_method", "change_index", "category", "paired"} <= set(csv.columns)
    a = csv.filter(pl.col("client_key") == "a").row(0, named=True)
    assert (a["change_method"], a["change_index"], a["reliable_change"], a["category"]) == (
        "threshold", "5.0", "improved", "improved")   # +5.0, not 4.999999999999999
    b = csv.filter(pl.col("client_key") == "b").row(0, named=True)
    assert (b["paired"], b["change"], b["category"]) == ("false", None, None)
    phq = csv.filter((pl.col("client_key") == "c") & (pl.col("instrument") == "PHQ9")).row(
        0, named=True)
    assert (phq["change_index"], phq["cutoff"], phq["category"]) == ("-18.0", "10.0",
                                                                     "recovered")
    nhs = csv.filter(pl.col("instrument") == "NHS_TT").row(0, named=True)
    assert (nhs["paired"], nhs["recovered"], nhs["change_method"]) == ("true", "true", None)
