"""Build every published mart from the ``response`` table: the one entry point.

The marts come in four families, one module each: ``quality`` (row-level, for the quality
team), ``director`` (``dir_*`` aggregates, suppressed here), ``export``
(``episode_outcome``) and ``reference`` (``outcome_definitions``). This module composes them;
their contracts are YAML in ``data_contracts/marts/``.

Two stages (docs/aggregate.md): ``transforms.client_state.client_state`` (per client, kept in
the warehouse by the ``aggregate`` flow and recomputed only for clients whose rows changed)
and :func:`population_marts` (from that state), which also judges every episode's change
against the reference sample (``transforms.change``: sample-based methods need every client).
``build_marts(responses, instruments, params)`` runs both at once. Each returned frame is
published as a table of that name.
Naming convention (docs/marts.md): marts whose name starts with ``dir_`` are
director-facing aggregates and pass through small-cell suppression here, in one place
(``suppression.suppress_marts``); the others are row-level marts for the quality team
(episode_id, client_key pseudonym, batch lineage), not suppressed.
Grouping columns set to null in a ``dir_`` mart mean "all" (e.g. clinic_id null = all clinics).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl

from tandem.core.contracts import Instrument
from transforms.alliance import alliance_instruments
from transforms.change import judge_change
from transforms.client_state import ClientState, client_state
from transforms.effect_sizes import with_adjusted_improvement
from transforms.episodes import open_expr
from transforms.marts.director import director_marts
from transforms.marts.export import EXPORT_COLUMNS, episode_outcome
from transforms.marts.quality import quality_marts
from transforms.marts.reference import outcome_definitions
from transforms.nhs_talking_therapies import PAIRED_MEASURES, episode_flags
from transforms.off_track import DEFAULT_Z, flag_off_track, trajectory_model
from transforms.suppression import suppress_marts

__all__ = ["EXPORT_COLUMNS", "MartParams", "build_marts", "population_marts"]


@dataclass(frozen=True)
class MartParams:
    """Configurable rules (defaults: settings ``episode_gap_days``, ``episode_open_days``,
    ``min_cell_size``). ``as_of`` decides which episodes are open; None = last session date."""

    gap_days: int = 90
    open_days: int = 60
    min_cell_size: int = 10
    as_of: dt.date | None = None
    cutoff_population: str | None = None  # ORS: adult (default) / adolescent / child
    off_track_z: float = DEFAULT_Z
    nhs_tt_measures: tuple[str, ...] = PAIRED_MEASURES


def build_marts(
    responses: pl.DataFrame, instruments: dict[str, Instrument], params: MartParams
) -> dict[str, pl.DataFrame]:
    """All marts by name. Pure: frames in, frames out. The one-shot composition of the two
    stages the incremental ``aggregate`` flow runs separately (one code path)."""
    state = client_state(responses, instruments, params.gap_days, params.cutoff_population)
    return population_marts(state, instruments, params)


def population_marts(
    state: ClientState, instruments: dict[str, Instrument], params: MartParams
) -> dict[str, pl.DataFrame]:
    """Stage 2: every mart from the per-client state (small: about one row per session or
    episode). Regressions, rates, ``open`` (as of the run date) and suppression live here.

    Inputs are sorted first, so the result does not depend on the order the state rows were
    stored in (a state updated client by client gives the same marts as a full rebuild)."""
    sessions = state.session.sort("clinic_id", "client_key", "session_date", "session_number")
    as_of = params.as_of or _last_date(sessions)
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]

    # ``open`` depends on the run date, so it is added here, in its documented place.
    cols = state.measure.columns
    at = cols.index("finished") + 1
    unjudged = (
        state.measure.sort("episode_id", "instrument")
        .with_columns(open_expr(as_of, params.open_days, "end_date").alias("open"))
        .select(*cols[:at], "open", *cols[at:])
    )
    # Change is judged over the population (reference sample, growth model): docs/outcomes.md.
    judged = judge_change(
        unjudged, state.score.sort("episode_id", "instrument", "time"), instruments,
        params.cutoff_population)
    measure = judged.measure
    outcome = measure.filter(pl.col("instrument").is_in(outcomes))

    nhs_ok = all(m in instruments and instruments[m].caseness for m in params.nhs_tt_measures)
    nhs = (
        episode_flags(measure.lazy(), instruments, params.nhs_tt_measures).collect()
        .sort("episode_id")
        if nhs_ok else None
    )

    flags = state.alliance.sort("episode_id", "instrument", "session_date", "session_number")
    srs = next((c for c in alliance_instruments(instruments)
                if instruments[c].alliance_flags is not None), None)
    adjusted = with_adjusted_improvement(outcome.lazy()).collect()
    model = trajectory_model(
        state.trajectory.lazy().select("instrument", "k", "intake", "so_far")
        .sort("instrument", "k", "intake", "so_far")
    )
    track = flag_off_track(
        measure.lazy(), state.track_latest.lazy().drop("clinic_id", "client_key"), model,
        outcomes, params.off_track_z,
    ).collect().sort("episode_id", "instrument")

    marts = {
        **quality_marts(sessions=sessions, measure=measure, flags=flags, track=track),
        "outcome_definitions": outcome_definitions(
            instruments, judged, params.cutoff_population, params.min_cell_size,
            params.nhs_tt_measures),
        "episode_outcome": episode_outcome(outcome, nhs if nhs is not None else pl.DataFrame()),
        **director_marts(sessions=sessions, measure=measure, outcome=outcome, nhs=nhs,
                         flags=flags, srs=srs, subscale=state.subscale, adjusted=adjusted,
                         track=track, instruments=instruments),
    }
    marts = suppress_marts(marts, params.min_cell_size)
    # Milestone-1 name, kept as an alias of the suppressed director mart.
    marts["therapist_alliance"] = marts["dir_therapist_alliance"]
    return marts


def _last_date(sessions: pl.DataFrame) -> dt.date:
    value = sessions.select(pl.col("session_date").max()).item() if sessions.height else None
    return value or dt.date(1970, 1, 1)
