"""Republish: the marts as of a past date, for a historical view (``tandem republish``).

The aggregate's engine, run as a full rebuild on the sessions held on or before ``as_of``
(everything known now: later deliveries and reprocesses of those sessions count), with
episodes open or closed as they were on that date. It is published like any aggregate
(readers switch atomically; the publication's info says ``historical: true`` and its
``as_of``) but does not touch the aggregate's stored per-client state, so the next
``tandem aggregate`` (or the next batch, when served) publishes the present again, whole.
"""

from __future__ import annotations

import datetime as dt

from tandem.core import published, warehouse
from tandem.core.contracts import load_instruments
from tandem.core.settings import Settings
from tandem.pipeline import client_state_store as store
from tandem.pipeline.aggregate import AUDIT_TABLES, mart_params
from transforms.client_state import client_state
from transforms.marts import population_marts


class NothingToPublish(RuntimeError):
    """The warehouse holds no answers on or before that date."""


def republish(settings: Settings, as_of: dt.date) -> dict:
    """Publish the marts as of ``as_of`` (see the module doc); returns what was published."""
    instruments = load_instruments(settings)
    params = mart_params(settings, as_of)
    cols = ", ".join(store.RESPONSE_COLUMNS)
    with warehouse.writer(settings) as con:
        con.execute("BEGIN TRANSACTION")  # reads only: one snapshot for all of them
        try:
            responses = warehouse.query_frame(
                con, f"SELECT {cols} FROM response WHERE session_date <= ?",  # noqa: S608 - module constants
                [as_of])
            audit = {name: warehouse.query_frame(con, sql) for name, sql in AUDIT_TABLES.items()}
            last_batch = warehouse.latest_batch_id(settings, con)
            snapshot = warehouse.current_snapshot(con)
        finally:
            con.execute("ROLLBACK")
    if responses.is_empty():
        raise NothingToPublish(f"the warehouse holds no answers on or before {as_of}")
    parts = [client_state(part, instruments, params.gap_days, params.cutoff_population)
             for _, part in responses.group_by("clinic_id", maintain_order=True)]
    state = store.concat_states(parts)
    marts = population_marts(state, instruments, params)
    marts.update(audit)
    meta = {"as_of": as_of.isoformat(), "last_batch_id": last_batch,
            "responses": responses.height, "aggregate_mode": "historical",
            "historical": True, "clients_recomputed": int(
                state.session.select(store.CLIENT_KEYS).unique().height),
            "snapshot": snapshot}
    snap = published.publish(marts, settings, meta=meta)
    return {"version": snap.version, "snapshot_id": snap.snapshot_id, "tables": snap.tables,
            "as_of": as_of.isoformat(), "responses": responses.height,
            "last_batch_id": last_batch, "mode": "historical",
            "clients_recomputed": meta["clients_recomputed"],
            "clinics": int(responses["clinic_id"].n_unique())}
