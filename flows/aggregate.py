"""The ``aggregate`` flow: :func:`tandem.pipeline.aggregate.run_aggregate` with each step a
Prefect task, the clinics' pieces mapped over the flow's task runner, then the
``tandem.marts.published`` event (docs/aggregate.md).

The task runner: Prefect's thread pool by default (Polars and DuckDB release the GIL, so the
clinics of one machine run in parallel with no copying of frames); with
``TANDEM_DASK_ADDRESS`` set, a Dask cluster (prefect-dask) runs them on its workers, on
other machines too. docs/scaling.md says why and how.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from flows.events import emit_marts_published
from tandem.core.settings import get_settings
from tandem.pipeline.aggregate import run_aggregate
from transforms.client_state import ClientState

_TASK_NAMES = {"plan_update": "plan", "build_marts": "build-marts",
               "publish_marts": "publish-marts", "clinic_piece": "clinic-state"}


def _as_task(fn: Callable[..., Any]) -> Callable[..., Any]:
    return task(fn, name=_TASK_NAMES.get(fn.__name__, fn.__name__), cache_policy=NO_CACHE)


def _task_map(fn: Callable[..., ClientState], calls: list[tuple]) -> list[ClientState]:
    """One task run per clinic, submitted to the flow's task runner at once."""
    piece = _as_task(fn)
    futures = [piece.submit(*args) for args in calls]
    wait(futures)
    return [f.result() for f in futures]


@flow(name="aggregate", log_prints=True)
def aggregate(as_of: str | None = None, full: bool = False) -> dict:
    """Bring the per-client state up to date (only touched clients unless ``full``), rebuild
    the population marts from it and publish them atomically."""
    day = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    info = run_aggregate(get_settings(), day, full, step=_as_task, mapper=_task_map)
    # --- events (flows/events.py): tell listeners the dashboard's data changed ---
    emit_marts_published(info)
    get_run_logger().info(
        "published snapshot %s (%s aggregate, %d clients of %d clinics recomputed): %s",
        info["version"], info["mode"], info["clients_recomputed"], info["clinics"],
        ", ".join(f"{k}={v}" for k, v in sorted(info["tables"].items())),
    )
    return info
