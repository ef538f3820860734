"""Off track: open episodes below the expected trajectory, or reliably deteriorated."""

from __future__ import annotations

import datetime as dt

import polars as pl

from tests.transforms.conftest import answers, day, frame
from transforms.clinical_significance import classify_clinical_significance
from transforms.episodes import assign_episodes, attach_episodes, episode_measures
from transforms.off_track import off_track
from transforms.reliable_change import classify_reliable_change
from transforms.scoring import score_administrations


def test_flags_lagging_and_deteriorating_open_episodes(instruments):
    rows = []
    # 30 typical clients gain ~ 4 points by session 2 (closed episodes in 2023).
    for k in range(30):
        rows += answers("ORS", [5] * 4, client=f"c{k}", date=dt.date(2023, 1, 1))
        gain = 4 + (k % 3 - 1) * 0.5
        rows += answers("ORS", [5 + gain / 4] * 4, client=f"c{k}",
                        date=dt.date(2023, 1, 8), session=2)
    # Open: one on track, one flat (below expected), one reliably worse.
    for name, gain in (("on", 4.0), ("flat", 0.0), ("worse", -6.0)):
        rows += answers("ORS", [5] * 4, client=name, date=day(0))
        rows += answers("ORS", [5 + gain / 4] * 4, client=name, date=day(7), session=2)
    admins = score_administrations(frame(rows), instruments)
    sessions = assign_episodes(admins, 90, day(10), 60)
    classified = classify_clinical_significance(
        classify_reliable_change(episode_measures(admins, sessions), instruments), instruments)
    out = off_track(attach_episodes(admins, sessions), classified, ["ORS"]).collect()
    flags = dict(zip(out["client_key"], out["off_track"], strict=True))
    assert flags == {"on": False, "flat": True, "worse": True}
    assert out.filter(pl.col("client_key") == "worse")["reliably_deteriorated"][0]
