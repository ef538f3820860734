"""The two-stage split behind the incremental aggregate: per-client state, population marts.

The incremental flow relies on three properties, each tested here on generated data:
the state of all clients is the union of each client's state; the population marts do not
depend on the order state rows are stored in; and the run date (``open``) is not in the state.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from tests.transforms.conftest import answers, day, frame
from tests.transforms.synthetic import generate
from transforms.client_state import ClientState, client_state, state_schemas
from transforms.marts import MartParams, build_marts, population_marts

PARAMS = MartParams(as_of=dt.date(2024, 9, 1), min_cell_size=5)


def _responses() -> pl.DataFrame:
    """Two clinics, with PHQ-9/GAD-7/WAI-SR rows for some clients of the second."""
    ors = pl.concat([generate(3, n_clients=150, clinic="C1"),
                     generate(4, n_clients=120, clinic="C2")])
    phq = []
    for c in range(12):
        for s in range(4):
            kw = {"clinic": "C3", "client": f"p{c}", "therapist": f"T{c % 3}",
                  "date": day(30 + 7 * s + c), "session": s + 1, "batch": 5}
            phq += answers("PHQ9", [max(0, 3 - s + (c % 2))] * 9, **kw)
            phq += answers("GAD7", [max(0, 2 - s // 2)] * 7, **kw)
            if s == 2:
                phq += answers("WAISR", [4, 3, 5, 4, 4, 3, 5, 4, 4, 3, 5, 4], **kw)
    return pl.concat([ors, frame(phq).select(ors.columns)], how="vertical_relaxed")


def canonical(frame_: pl.DataFrame) -> pl.DataFrame:
    """Rows in a fixed order (marts are sets of rows; group-by output order is arbitrary)."""
    keys = [c for c, t in frame_.schema.items() if not isinstance(t, pl.List | pl.Struct)]
    return frame_.sort(keys, nulls_last=True) if keys else frame_


def assert_marts_equal(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    """Same marts, columns, dtypes and rows; non-float values exactly, floats to 1e-12
    (the state is bit-exact; a few population sums still follow group-by output order)."""
    assert a.keys() == b.keys()
    for name in a:
        assert_frame_equal(canonical(a[name]), canonical(b[name]), check_exact=False,
                           rel_tol=1e-12, abs_tol=1e-12)


def test_state_of_all_is_union_of_per_client_states(instruments):
    responses = _responses()
    whole = client_state(responses, instruments, PARAMS.gap_days)
    by_client = responses.with_columns(
        (pl.col("client_key").hash(7) % 3).alias("_part")
    ).partition_by("_part", include_key=False)
    parts = [client_state(p, instruments, PARAMS.gap_days) for p in by_client]
    stacked = ClientState.concat(parts, like=client_state(responses.head(0), instruments,
                                                          PARAMS.gap_days))
    for name, frame_ in whole.frames().items():
        other = stacked.frames()[name]
        assert frame_.schema == other.schema, name
        assert frame_.height == other.height, name
    assert_marts_equal(population_marts(whole, instruments, PARAMS),
                        population_marts(stacked, instruments, PARAMS))


def test_population_marts_do_not_depend_on_state_row_order(instruments):
    state = client_state(_responses(), instruments, PARAMS.gap_days)
    shuffled = ClientState(**{n: f.sample(fraction=1.0, shuffle=True, seed=11)
                              for n, f in state.frames().items()})
    assert_marts_equal(population_marts(state, instruments, PARAMS),
                        population_marts(shuffled, instruments, PARAMS))


def test_build_marts_is_the_two_stages(instruments):
    responses = _responses()
    state = client_state(responses, instruments, PARAMS.gap_days)
    assert_marts_equal(build_marts(responses, instruments, PARAMS),
                        population_marts(state, instruments, PARAMS))


def test_open_follows_the_run_date_not_the_state(instruments):
    rows = (answers("ORS", [5, 5, 5, 5], date=day(0), session=1)
            + answers("ORS", [6, 6, 6, 6], date=day(14), session=2))
    state = client_state(frame(rows), instruments, 90)
    assert "open" not in state.measure.columns
    early = population_marts(state, instruments, MartParams(as_of=day(30)))
    late = population_marts(state, instruments, MartParams(as_of=day(200)))
    assert early["episode_measure"]["open"].to_list() == [True]
    assert late["episode_measure"]["open"].to_list() == [False]
    assert early["off_track_episode"].height == 1 and late["off_track_episode"].height == 0


def test_state_schemas_match_what_client_state_produces(instruments):
    schemas = state_schemas(instruments)
    state = client_state(_responses(), instruments, 90)
    assert {n: f.schema for n, f in state.frames().items()} == schemas
    assert any(c.startswith("practice_") for c in schemas["measure"])
    assert all({"clinic_id", "client_key"} <= set(s) for s in schemas.values())
