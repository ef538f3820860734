"""Alliance: SRS below 36, SRS drops, early alliance, WAI-SR fallback."""

from __future__ import annotations

import pytest

from tests.transforms.conftest import answers, day, frame
from transforms.alliance import early_alliance, session_alliance_flags
from transforms.episodes import assign_episodes, attach_episodes
from transforms.scoring import score_administrations


def admins_ep(instruments, rows):
    admins = score_administrations(frame(rows), instruments)
    sessions = assign_episodes(admins, 90, day(400), 60)
    return attach_episodes(admins, sessions)


def srs(total, d, n):
    return answers("SRS", [total / 4] * 4, date=day(d), session=n)


def test_srs_below_36_and_any_drop_are_flagged(instruments):
    lf = admins_ep(instruments, srs(38, 0, 1) + srs(36, 7, 2) + srs(35.9, 14, 3) + srs(37, 21, 4))
    out = session_alliance_flags(lf, instruments).sort("session_date").collect()
    assert out["low_alliance"].to_list() == [False, False, True, False]
    assert out["alliance_drop"].to_list() == [False, True, True, False]


def test_early_alliance_is_mean_of_first_two_srs(instruments):
    lf = admins_ep(instruments, srs(30, 0, 1) + srs(34, 7, 2) + srs(40, 14, 3))
    out = early_alliance(lf, instruments).collect().row(0, named=True)
    assert out["early_alliance"] == pytest.approx(32) and out["early_alliance_instrument"] == "SRS"


def test_without_srs_early_alliance_is_first_wai_sr(instruments):
    rows = (answers("PHQ9", [2] * 9, date=day(0))
            + answers("WAISR", [4] * 12, date=day(14), session=3)
            + answers("WAISR", [5] * 12, date=day(28), session=5))
    out = early_alliance(admins_ep(instruments, rows), instruments).collect().row(0, named=True)
    assert out["early_alliance"] == 48 and out["early_alliance_instrument"] == "WAISR"
