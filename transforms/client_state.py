"""Stage 1 of the marts: per-client state, everything that depends on one client's rows only.

Scoring, episodes (without ``open``, which depends on the run date), per-episode measures (first
and last available score, the pair, change), early alliance, practice exposure, SRS session
flags, WAI-SR subscale values and the off-track trajectory points all follow from one client's
``response`` rows (a client = ``clinic_id`` + ``client_key``) and the rules (instruments,
``gap_days``). So the state of a set of clients is the concatenation of each client's state,
and the ``aggregate`` flow can recompute only the clients whose rows changed and keep the rest
(stage 2, ``transforms.marts.population_marts``, reads the state).

Judging change (reliable change, clinical significance, categories) is *not* here: the
sample-based methods (GLN, HLL, EN, NK, HA, JT without a published SD, HLM, cutoffs from the
sample) need statistics of every client, so it is done in stage 2 for all methods alike.

The frames are small next to ``response``: one row per session, per episode x measure, per SRS
administration, per WAI-SR subscale value, per outcome score after intake, and, for
instruments judged by HLM only, per scored administration (the growth model's input).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields

import polars as pl

from tandem.core.contracts import Instrument
from transforms.alliance import early_alliance, session_alliance_flags
from transforms.episodes import (
    SESSION_KEYS,
    attach_episodes,
    episode_measures_lazy,
    episode_sessions_lazy,
)
from transforms.off_track import latest_position, trajectory
from transforms.practice import checklist_instruments, episode_practice
from transforms.scoring import (
    instrument_frame,
    item_values,
    score_administrations_lazy,
    subscale_column,
)

# Bump when the meaning or shape of the state changes: stored state is then rebuilt.
# 2: episode_session has_outcome / has_alliance flags; 3: measures without classification
# (stage 2 judges change), ``paired`` and a null last score without a pair, ``score`` frame.
STATE_VERSION = 3

RESPONSE_COLUMNS = [
    "clinic_id", "client_key", "therapist_id", "session_date", "session_number",
    "instrument", "item", "score", "batch_id",
]
RESPONSE_SCHEMA = {
    "clinic_id": pl.String, "client_key": pl.String, "therapist_id": pl.String,
    "session_date": pl.Date, "session_number": pl.Int32, "instrument": pl.String,
    "item": pl.Int16, "score": pl.Float64, "batch_id": pl.Int64,
}
ALLIANCE_COLUMNS = [
    "episode_id", "clinic_id", "client_key", "therapist_id", "session_date", "session_number",
    "instrument", "total", "change_from_previous", "low_alliance", "alliance_drop", "batch_ids",
]


@dataclass(frozen=True)
class ClientState:
    """The per-client state of some clients (see module doc). Every frame has
    ``clinic_id`` and ``client_key``, so a client's rows can be replaced."""

    session: pl.DataFrame  # per session: episode, index, episode start/end, lineage, has_*
    measure: pl.DataFrame  # per episode x instrument: episode_measure without ``open``
    alliance: pl.DataFrame  # per SRS administration: session_alliance
    subscale: pl.DataFrame  # per administration x subscale: value (long)
    trajectory: pl.DataFrame  # per outcome score after intake: instrument, k, intake, so_far
    track_latest: pl.DataFrame  # per episode x outcome measure: latest k, intake, improvement
    score: pl.DataFrame  # per scored administration of an HLM-judged instrument: time, score

    def frames(self) -> dict[str, pl.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concat(cls, parts: list[ClientState], like: ClientState) -> ClientState:
        """Stack the states of disjoint client sets (``like`` gives the schemas)."""
        return cls(**{
            name: pl.concat([like.frames()[name], *[p.frames()[name] for p in parts]],
                            how="vertical_relaxed")
            for name in like.frames()
        })


def state_fingerprint(
    instruments: dict[str, Instrument], gap_days: int, cutoff_population: str | None
) -> str:
    """What the stored state was computed with; a different value means rebuild it all."""
    body = {
        "state_version": STATE_VERSION,
        "gap_days": gap_days,
        "cutoff_population": cutoff_population,
        "instruments": {c: i.model_dump(mode="json") for c, i in sorted(instruments.items())},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def empty_responses() -> pl.DataFrame:
    return pl.DataFrame(schema=RESPONSE_SCHEMA)


def state_schemas(
    instruments: dict[str, Instrument], gap_days: int = 90, cutoff_population: str | None = None
) -> dict[str, pl.Schema]:
    """The schema of every state frame (they depend on the instruments: ``practice_*``)."""
    empty = client_state(empty_responses(), instruments, gap_days, cutoff_population)
    return {name: frame.schema for name, frame in empty.frames().items()}


def client_state(
    responses: pl.DataFrame | pl.LazyFrame,
    instruments: dict[str, Instrument],
    gap_days: int,
    cutoff_population: str | None = None,
) -> ClientState:
    """The state of every client in ``responses`` (all of each client's rows must be there).
    ``cutoff_population`` is accepted for the callers' sake; the cutoff is applied in stage 2."""
    responses = responses.lazy().filter(pl.col("instrument").is_in(list(instruments)))
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]

    admins = score_administrations_lazy(responses, instruments).collect()
    sessions = episode_sessions_lazy(admins, gap_days).collect()
    admins_ep = attach_episodes(admins, sessions).collect()
    measures = episode_measures_lazy(admins, sessions)
    early = early_alliance(admins_ep.lazy(), instruments)
    checklist = checklist_instruments(instruments)
    items_ep = (
        pl.concat([item_values(responses, instruments, c) for c in checklist])
        .join(sessions.lazy().select(*SESSION_KEYS, "episode_id"), on=SESSION_KEYS)
        if checklist
        else pl.LazyFrame(schema={"episode_id": pl.String, "item_name": pl.String,
                                  "score": pl.Float64, "session_date": pl.Date,
                                  "session_number": pl.Int32})
    )
    practice = episode_practice(items_ep, admins_ep.lazy(), instruments)
    measure = measures.join(early, on="episode_id", how="left").join(
        practice, on="episode_id", how="left")

    alliance = session_alliance_flags(admins_ep.lazy(), instruments).select(ALLIANCE_COLUMNS)
    directions = instrument_frame(instruments).lazy().select("instrument", "higher_is_better")
    traj = trajectory(admins_ep.lazy(), outcomes, directions)
    subscale = _subscale_values(admins_ep, instruments)
    kinds = {"has_outcome": "outcome", "has_alliance": "alliance"}
    session_flags = (
        admins.lazy().filter(pl.col("total").is_not_null())
        .group_by(SESSION_KEYS)
        .agg(*[pl.col("instrument").is_in([c for c, i in instruments.items() if i.kind == k])
               .any().alias(name) for name, k in kinds.items()])
    )
    frames = pl.collect_all([
        sessions.lazy().select(
            "episode_id", "clinic_id", "client_key", "session_date", "session_number",
            "therapist_id", "session_index", "batch_ids", "episode_start", "episode_end",
            "episode_sessions", "episode_therapist_id", "finished",
        ).join(session_flags, on=SESSION_KEYS, how="left").with_columns(
            *[pl.col(c).fill_null(False) for c in kinds]),
        measure,
        alliance,
        subscale,
        traj.select("clinic_id", "client_key", "instrument", "k", "intake", "so_far"),
        latest_position(traj).join(
            sessions.lazy().select("episode_id", "clinic_id", "client_key")
            .unique("episode_id"),
            on="episode_id", how="left",
        ).select("episode_id", "clinic_id", "client_key", "instrument", "k", "intake",
                 "improvement"),
        hlm_scores(admins_ep.lazy(), instruments),
    ])
    return ClientState(*frames)


def hlm_scores(admins_ep: pl.LazyFrame, instruments: dict[str, Instrument]) -> pl.LazyFrame:
    """Every scored administration of the instruments judged by HLM, with its time (the
    session's position in the episode): the growth model is fitted in stage 2."""
    codes = [c for c, i in instruments.items()
             if i.change_rule is not None and i.change_rule.method == "HLM"]
    return (
        admins_ep.filter(pl.col("instrument").is_in(codes) & pl.col("total").is_not_null())
        .select("episode_id", "clinic_id", "client_key", "instrument",
                pl.col("session_index").alias("time"), pl.col("total").alias("score"))
    )


def _subscale_values(
    admins_ep: pl.DataFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """Subscale totals (e.g. WAI-SR task/bond/goal) per administration, long."""
    parts = [
        admins_ep.lazy()
        .filter((pl.col("instrument") == code) & pl.col(subscale_column(name)).is_not_null())
        .select("clinic_id", "client_key", "therapist_id", "instrument",
                pl.lit(name).alias("measure"),
                pl.col(subscale_column(name)).cast(pl.Float64).alias("value"))
        for code, inst in instruments.items()
        for name in inst.scoring.subscales
    ]
    schema = {"clinic_id": pl.String, "client_key": pl.String, "therapist_id": pl.String,
              "instrument": pl.String, "measure": pl.String, "value": pl.Float64}
    if not parts:
        return pl.LazyFrame(schema=schema)
    return pl.concat(parts, how="vertical_relaxed").cast(schema)
