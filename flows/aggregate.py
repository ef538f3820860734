"""The ``aggregate`` flow: warehouse rows to published marts, in one atomic publish.

Incremental (docs/aggregate.md): under the writer lock it finds the clients touched since the
last run (rows in batches newer than the watermark, or lineage in a batch that has since been
superseded), recomputes only their per-client state (``transforms.client_state``) from their
``response`` rows, replaces their ``agg_*`` rows in one transaction and reads the (small)
state back. Then, lock released, it builds the population marts
(``transforms.marts.population_marts``) and publishes them as one new snapshot that readers
switch to at once (tandem.publish): after an increment, by patching the previous snapshot's
row-level marts for the touched clients only. ``full=True`` (or changed rules) rebuilds every
client, streamed in client-hash partitions so memory stays bounded at 10 M administrations.

The work itself is Prefect-free, in ``tandem.aggregate_state`` (re-exported here); this
module only wraps it in Prefect tasks and emits the events.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.events import emit_marts_published
from tandem import publish
from tandem.aggregate_state import (  # noqa: F401 - re-exported: the flow's API
    AUDIT_TABLES,
    ROWS_PER_PARTITION,
    TOUCHED,
    StateRead,
    mart_params,
    publish_meta,
    read_state,
    recompute_clients,
    row_patch,
    run_aggregate,
    update_and_read,
    update_state,
)
from tandem.contracts import load_instruments
from tandem.settings import Settings, get_settings
from transforms.client_state import ClientState
from transforms.marts import MartParams, population_marts

_meta = publish_meta


@task(name="update-state", cache_policy=NO_CACHE)
def update_state_task(settings: Settings, params: MartParams, full: bool) -> StateRead:
    return update_and_read(settings, load_instruments(settings), params, full)


@task(name="build-marts", cache_policy=NO_CACHE)
def build(state: ClientState, settings: Settings, params: MartParams) -> dict[str, pl.DataFrame]:
    return population_marts(state, load_instruments(settings), params)


@task(name="publish-marts", cache_policy=NO_CACHE)
def publish_marts(
    marts: dict[str, pl.DataFrame], settings: Settings, meta: dict,
    patch: publish.RowPatch | None = None,
) -> dict:
    snap = publish.publish(marts, settings, meta=meta, patch=patch)
    return {"version": snap.version, "path": str(snap.path), "tables": snap.tables,
            "patched": snap.patched}


@flow(name="aggregate", log_prints=True)
def aggregate(as_of: str | None = None, full: bool = False) -> dict:
    """Bring the per-client state up to date (only touched clients unless ``full``), rebuild
    the population marts from it and publish them atomically."""
    settings = get_settings()
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    params = mart_params(settings, day)
    read = update_state_task(settings, params, full)
    last_batch = read.info["last_batch_id"]
    marts = build(read.state, settings, params)
    marts.update(read.audit)
    info = publish_marts(marts, settings, publish_meta(day, read.info), row_patch(read, params))
    # --- events (flows/events.py): tell listeners the dashboard's data changed ---
    emit_marts_published({**info, "last_batch_id": last_batch})
    get_run_logger().info(
        "published snapshot %s (%s aggregate, %d clients recomputed): %s",
        info["version"], read.info["mode"], read.info["clients_recomputed"],
        ", ".join(f"{k}={v}" for k, v in sorted(info["tables"].items())),
    )
    return {**info, **{k: read.info[k] for k in ("mode", "clients_recomputed",
                                                 "response_rows_read", "partitions")}}
