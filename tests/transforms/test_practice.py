"""Practice exposure per episode: share of sessions with each checklist practice."""

from __future__ import annotations

import pytest

from tests.transforms.conftest import answers, day, frame
from transforms.episodes import SESSION_KEYS, assign_episodes, attach_episodes
from transforms.practice import episode_practice, exposure_level
from transforms.scoring import item_values, score_administrations


def test_exposure_is_mean_over_practices_of_share_of_sessions(instruments):
    rows = (answers("PRACTICE", [1, 1, 0, 0, 1, None], date=day(0))
            + answers("PRACTICE", [1, 0, 0, 0, 1, 0], date=day(7), session=2)
            + answers("COLLABORATE", [9, 9, 9], date=day(0))
            + answers("COLLABORATE", [9, 8, 9], date=day(7), session=2))
    df = frame(rows)
    admins = score_administrations(df, instruments)
    sessions = assign_episodes(admins, 90, day(400), 60)
    items = item_values(df, instruments, "PRACTICE").join(
        sessions.lazy().select(*SESSION_KEYS, "episode_id"), on=SESSION_KEYS)
    out = episode_practice(items, attach_episodes(admins, sessions), instruments)
    row = out.collect().row(0, named=True)
    # shares: goals 1, feedback .5, progress 0, decision 0, cultural 1, family 0 (1 reported)
    assert row["practice_goals_set_together"] == 1
    assert row["practice_feedback_asked_and_discussed"] == 0.5
    assert row["practice_family_or_support_involved"] == 0
    assert row["exposure"] == pytest.approx(2.5 / 6)
    assert row["top_score_share"] == 0.5 and row["checklist_sessions"] == 2


def test_exposure_levels():
    import polars as pl

    out = pl.DataFrame({"e": [0.0, 0.34, 0.7, None]}).select(exposure_level(pl.col("e")))
    assert out.to_series().to_list() == ["low", "medium", "high", None]
