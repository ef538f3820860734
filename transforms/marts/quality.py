"""The row-level marts for the quality team: sessions, episode measures, alliance flags and
off-track episodes, with client pseudonyms, episode ids and batch lineage. Not suppressed;
never shown to directors (docs/marts.md)."""

from __future__ import annotations

import polars as pl


def quality_marts(*, sessions: pl.DataFrame, measure: pl.DataFrame, flags: pl.DataFrame,
                  track: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """``episode_session``, ``episode_measure``, ``session_alliance``, ``off_track_episode``."""
    return {
        "episode_session": sessions.select(
            "episode_id", "clinic_id", "client_key", "session_date", "session_number",
            "therapist_id", "session_index", "has_outcome", "has_alliance", "batch_ids",
        ),
        "episode_measure": measure,
        "session_alliance": flags.select(
            "episode_id", "clinic_id", "client_key", "therapist_id", "session_date",
            "session_number", "instrument", "total", "change_from_previous", "low_alliance",
            "alliance_drop", "batch_ids",
        ),
        "off_track_episode": track,
    }
