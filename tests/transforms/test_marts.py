"""build_marts: names, suppression on every dir_ mart, export rows, lineage, empty input."""

from __future__ import annotations

import datetime as dt

import duckdb
import polars as pl

from tandem.pipeline.export import export_episodes
from tests.transforms.conftest import RESPONSE_SCHEMA, answers, day, frame
from tests.transforms.synthetic import generate
from transforms.marts import EXPORT_COLUMNS, MartParams, build_marts


def test_all_marts_built_and_director_marts_suppressed(instruments):
    marts = build_marts(generate(1, n_clients=300), instruments,
                        MartParams(as_of=dt.date(2024, 12, 31)))
    assert {"episode_measure", "therapist_alliance", "episode_outcome", "episode_session",
            "dir_alliance_outcome", "dir_practice_effect", "dir_outcomes"} <= set(marts)
    for name, df in marts.items():
        if name.startswith("dir_") or name == "therapist_alliance":
            assert "suppressed" in df.columns, name
            small = df.filter(pl.col("suppressed"))
            assert small["n_clients"].null_count() == small.height
    assert marts["dir_therapist_alliance"]["suppressed"].any()   # ~10 clients per therapist


def test_lineage_from_episode_to_batches(instruments):
    rows = (answers("ORS", [5] * 4, batch=7) + answers("ORS", [6] * 4, date=day(7), session=2,
                                                       batch=8))
    marts = build_marts(frame(rows), instruments, MartParams(as_of=day(400)))
    s = marts["episode_session"]
    assert s["episode_id"].n_unique() == 1
    assert sorted(b for lst in s["batch_ids"].to_list() for b in lst) == [7, 8]


def test_nhs_tt_row_and_export_csv(instruments, tmp_path):
    rows = (answers("PHQ9", [2] * 9, date=day(0)) + answers("GAD7", [2] * 7, date=day(0))
            + answers("PHQ9", [0] * 9, date=day(7), session=2)
            + answers("GAD7", [0] * 7, date=day(7), session=2))
    marts = build_marts(frame(rows), instruments, MartParams(as_of=day(400)))
    out = marts["episode_outcome"]
    assert out["instrument"].to_list() == ["GAD7", "NHS_TT", "PHQ9"]
    nhs = out.filter(pl.col("instrument") == "NHS_TT").row(0, named=True)
    assert nhs["recovered"] and nhs["reliable_recovery"] and nhs["finished_treatment"]
    con = duckdb.connect()
    con.register("f", out.to_arrow())
    con.execute("CREATE TABLE episode_outcome AS SELECT * FROM f")
    n = export_episodes(con, tmp_path / "episodes.csv")
    text = (tmp_path / "episodes.csv").read_text()
    assert n == 3 and text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    assert ",true," in text and "True" not in text


def test_empty_warehouse_builds_empty_marts(instruments):
    marts = build_marts(pl.DataFrame(schema=RESPONSE_SCHEMA), instruments, MartParams())
    assert marts["episode_measure"].height == 0 and "therapist_alliance" in marts
