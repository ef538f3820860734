"""Episodes of care: gap rule, stable ids, first/last available score, finished, open."""

from __future__ import annotations

import datetime as dt

import polars as pl

from tests.transforms.conftest import answers, day, frame
from transforms.episodes import assign_episodes, episode_measures
from transforms.scoring import score_administrations


def _admins(instruments, visits):
    rows = []
    for n, (d, ors) in enumerate(visits, start=1):
        rows += answers("ORS", ors, date=day(d), session=n)
    return score_administrations(frame(rows), instruments)


def test_gap_of_exactly_gap_days_stays_in_the_episode(instruments):
    admins = _admins(instruments, [(0, [5] * 4), (90, [6] * 4)])
    s = assign_episodes(admins, gap_days=90, as_of=day(400), open_days=60)
    assert s["episode_id"].n_unique() == 1


def test_gap_longer_than_gap_days_starts_a_new_episode(instruments):
    admins = _admins(instruments, [(0, [5] * 4), (91, [6] * 4), (100, [7] * 4)])
    s = assign_episodes(admins, gap_days=90, as_of=day(400), open_days=60)
    assert s["episode_id"].unique().sort().to_list() == ["C1:k1:2024-01-01", "C1:k1:2024-04-01"]
    assert s.filter(pl.col("session_date") == day(100))["session_index"][0] == 2


def test_episode_id_is_deterministic_and_gap_is_configurable(instruments):
    admins = _admins(instruments, [(0, [5] * 4), (40, [6] * 4)])
    a = assign_episodes(admins, gap_days=30, as_of=day(400), open_days=60)
    b = assign_episodes(admins.reverse(), gap_days=30, as_of=day(400), open_days=60)
    assert a["episode_id"].n_unique() == 2
    assert sorted(a["episode_id"].to_list()) == sorted(b["episode_id"].to_list())


def test_open_when_last_session_within_open_days_of_as_of(instruments):
    admins = _admins(instruments, [(0, [5] * 4), (7, [6] * 4)])
    assert assign_episodes(admins, 90, day(7 + 60), 60)["open"].all()
    assert not assign_episodes(admins, 90, day(7 + 61), 60)["open"].any()


def test_first_and_last_available_scores_change_and_finished(instruments):
    """An incomplete ORS (no total) is not 'available'; the last available is carried."""
    admins = _admins(
        instruments,
        [(0, [2, 2, 2, 2]), (7, [3, 3, 3, 3]), (14, [5, 5, 5, 5]), (21, [9, 9, 9, None])],
    )
    s = assign_episodes(admins, 90, dt.date(2025, 1, 1), 60)
    m = episode_measures(admins, s).row(0, named=True)
    assert (m["first_score"], m["last_score"], m["change"]) == (8, 20, 12)
    assert m["first_date"] == day(0) and m["last_date"] == day(14)
    assert m["sessions"] == 4 and m["finished"] is True and m["open"] is False


def test_one_session_is_not_finished(instruments):
    admins = _admins(instruments, [(0, [2] * 4)])
    s = assign_episodes(admins, 90, dt.date(2025, 1, 1), 60)
    m = episode_measures(admins, s).row(0, named=True)
    assert m["finished"] is False and m["change"] is None  # one score: no pair


def test_one_score_is_not_a_pair(instruments):
    """NHS Talking Therapies pairs the first and last of at least two available scores."""
    admins = _admins(instruments, [(0, [2] * 4), (7, [3, 3, 3, None])])  # 2nd incomplete
    s = assign_episodes(admins, 90, dt.date(2025, 1, 1), 60)
    m = episode_measures(admins, s).row(0, named=True)
    assert m["finished"] is True and m["n_scores"] == 1 and m["paired"] is False
    assert (m["first_score"], m["last_score"], m["change"]) == (8, None, None)


def test_main_therapist_is_the_one_with_most_sessions(instruments):
    rows = (answers("ORS", [1] * 4, date=day(0), therapist="A")
            + answers("ORS", [1] * 4, date=day(7), session=2, therapist="B")
            + answers("ORS", [1] * 4, date=day(14), session=3, therapist="B"))
    admins = score_administrations(frame(rows), instruments)
    s = assign_episodes(admins, 90, day(400), 60)
    assert set(s["episode_therapist_id"]) == {"B"}
