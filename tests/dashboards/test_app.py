"""The dashboard page shows what the published marts hold (Streamlit AppTest)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
from streamlit.testing.v1 import AppTest

from tandem import publish

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def _publish_small_snapshot(settings) -> None:
    episode_measure = pl.DataFrame({
        "clinic_id": ["northside", "northside"],
        "client_key": ["k1", "k2"],
        "therapist_id": ["T01", "T02"],
        "episode_id": ["e1", "e2"],
        "instrument": ["ORS", "ORS"],
        "first_date": [dt.date(2026, 1, 5), dt.date(2026, 1, 6)],
        "last_date": [dt.date(2026, 1, 19), dt.date(2026, 1, 13)],
        "sessions": [3, 2],
        "first_score": [20.0, 12.0],
        "last_score": [28.0, 16.0],
        "change": [8.0, 4.0],
    })
    alliance = pl.DataFrame({
        "clinic_id": ["northside"], "therapist_id": ["T01"], "n_sessions": [24],
        "n_clients": [12], "mean_total": [34.5], "instrument": ["SRS"], "suppressed": [False],
    })
    publish.publish({"episode_measure": episode_measure, "dir_therapist_alliance": alliance},
                    settings)


def test_page_without_data_says_what_to_do(tandem_home):
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "No data published yet" in at.info[0].value


def test_page_shows_episode_change_and_therapist_srs(tandem_home):
    _publish_small_snapshot(tandem_home)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Episodes with ORS"] == "2"
    assert metrics["Mean first ORS"] == "16.0"
    assert metrics["Mean change (points)"] == "+6.0"
    episodes = at.dataframe[0].value
    assert list(episodes["change"]) == [8.0, 4.0]
    therapists = at.dataframe[1].value
    assert therapists["mean_total"].tolist() == [34.5]


def test_next_view_after_a_publish_shows_the_new_data(tandem_home):
    _publish_small_snapshot(tandem_home)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert {m.label: m.value for m in at.metric}["Episodes with ORS"] == "2"
    one = pl.DataFrame({
        "clinic_id": ["northside"], "client_key": ["k1"], "therapist_id": ["T01"],
        "episode_id": ["e1"], "instrument": ["ORS"], "first_date": [dt.date(2026, 1, 5)],
        "last_date": [dt.date(2026, 1, 19)], "sessions": [3], "first_score": [20.0],
        "last_score": [30.0], "change": [10.0],
    })
    publish.publish({"episode_measure": one}, tandem_home)
    at.run()
    assert {m.label: m.value for m in at.metric}["Mean change (points)"] == "+10.0"
