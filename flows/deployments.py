"""The served deployments: what runs on events, what runs on a schedule.

``python -m flows.deployments`` serves them all from one process (``tandem serve`` starts
it next to the Prefect server). Each flow run is a fresh process started by the runner.

Coalescing. A trigger with ``within=W`` fires at the *first* matching event and ignores
the rest of that window (Prefect's reactive bucket: it fires eagerly, then waits for the
window to end). Alone that would lose the tail of a burst, so the run it starts *owns*
the window: it keeps working until ``W`` (+ a margin) after it started, which is after the
window the trigger ignored events in, and does a final check before it ends:

* ``ingest-received`` claims every file waiting in its clinic's intake (not only the
  event's), loads them with the ``ingest`` flow, and keeps claiming new arrivals until
  its window is over. Claims are atomic renames, so a file loads exactly once.
* ``aggregate-on-batches`` publishes at once when it starts (low latency for a lone
  file), then re-publishes only after the warehouse has been quiet for a moment (or a
  maximum wait), and finally once more if anything landed since its last publish. It
  has a deployment concurrency limit of 1 (queue), so two of them never overlap, and a
  run that finds the published snapshot already current publishes nothing.

So 100 files in a minute cause a handful of ``aggregate`` runs, and the last batch of a
burst is always in the marts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from typing import Any

from prefect import flow, get_run_logger

from flows.aggregate import aggregate
from flows.events import (
    BATCH_ANY,
    FILE_RECEIVED,
    LABEL_CLINIC,
    LABEL_FILE,
    LABEL_TRIGGER,
    MARTS_STALE,
)
from flows.ingest import ingest, ingest_claimed, report_batches
from tandem.core import published, warehouse
from tandem.core.settings import get_settings
from tandem.pipeline import intake

# Workers' flow runs send a heartbeat this often (Prefect's minimum); a run silent for two
# of them is marked crashed (its worker or machine died).
HEARTBEAT_SECONDS = 30
# A run outlives its trigger window by this much (event timestamps vs. run start).
WINDOW_MARGIN_SECONDS = 2.0
POLL_SECONDS = 0.5


@flow(name="ingest-received", log_prints=True, retries=2, retry_delay_seconds=10)
def ingest_received(clinic_id: str, path: str | None = None, trigger: str = "inbox") -> dict:
    """Load the files received for one clinic: the event's, and any landing in the window.

    ``path`` is the file the triggering event named; it is loaded with its neighbours
    (or was already claimed by a sibling run).
    """
    settings = cfg = get_settings()
    logger = get_run_logger()
    if not intake.valid_clinic_id(clinic_id):
        raise ValueError(f"not a clinic id: {clinic_id!r}")
    deadline = window_end(cfg.ingest_window_seconds)
    me = _flow_run_id()
    results: list[dict] = []
    while True:
        claimed = [c for c in (intake.claim(settings, p, owner=me)
                               for p in intake.pending(settings, clinic_id)) if c]
        if claimed:
            logger.info("claimed %d file(s) for %s", len(claimed), clinic_id)
            results.extend(ingest_claimed(settings, claimed))
            continue
        if time.time() >= deadline:
            break
        time.sleep(POLL_SECONDS)
    report_batches(results, f"ingest-{clinic_id.lower().replace('_', '-')}")
    counts = {s: sum(1 for r in results if r["status"] == s)
              for s in sorted({r["status"] for r in results})}
    return {"clinic_id": clinic_id, "files": len(results), "by_status": counts,
            "rows_loaded": sum(r["rows_loaded"] for r in results)}


def _flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    run = getattr(ctx, "flow_run", None)
    return str(run.id) if run is not None else None


def window_end(window_seconds: float) -> float:
    """Wall-clock time this run must cover: its trigger window, counted from its creation.

    The run is created after the event that fired it, so ``created + window`` is at or
    after the end of the window in which the trigger ignored further events. A run that
    waited in a queue past that point needs only one look.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    created = getattr(getattr(ctx, "flow_run", None), "created", None)
    base = created.timestamp() if created else time.time()
    return base + window_seconds + WINDOW_MARGIN_SECONDS


@flow(name="aggregate-on-batches", log_prints=True, retries=2, retry_delay_seconds=10)
def aggregate_on_batches(as_of: str | None = None) -> dict:
    """Publish the marts for a burst of batches: promptly, then when quiet, then done.

    Publishes when the warehouse is ahead of the newest publication and either nothing
    was committed to the lake for ``aggregate_quiet_seconds`` or the publication is older than
    ``aggregate_max_wait_seconds`` (so a lone file is published at once, and a long burst
    every few minutes). Ends once its window is over and a final look, taken after the
    last change it saw, finds the snapshot current.
    """
    settings = cfg = get_settings()
    logger = get_run_logger()
    deadline = window_end(cfg.aggregate_window_seconds)
    runs: list[str] = []
    with warehouse.reader(settings) as con:  # one connection, asked every poll
        in_marts, published_at = published.published_state(settings, con)
        sig = warehouse.current_snapshot(con)
        last_change = checked_at = -1.0
        first, behind = True, False
        while True:
            now = time.time()
            current = warehouse.current_snapshot(con)
            if current != sig:
                sig, last_change = current, now
            quiet = now - last_change >= cfg.aggregate_quiet_seconds
            stale = now - published_at >= cfg.aggregate_max_wait_seconds
            if first or ((behind or last_change > checked_at) and (quiet or stale)):
                first, checked_at = False, now
                behind = published.marts_lag(settings, con).behind
                if behind and (quiet or stale):
                    info = aggregate(as_of)
                    runs.append(info["version"])
                    in_marts, published_at = published.published_state(settings, con)
                    sig = warehouse.current_snapshot(con)  # our own publish is no change
                    behind, last_change = False, time.time()
                    continue
            if now >= deadline and quiet and not behind and checked_at >= last_change:
                break
            time.sleep(POLL_SECONDS)
    logger.info("published %d snapshot(s); marts include batch %d", len(runs), in_marts)
    return {"published": runs, "last_batch_id": in_marts}


def deployment_specs() -> list[tuple[Any, dict[str, Any]]]:
    """Every deployment of the served pipeline: its flow, and its name, triggers, schedules
    and limits (the same whether a runner serves them or a work pool's workers run them)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron

    from flows.quality_summary import quality_summary
    from flows.repair import reprocess_flow, republish_flow
    from flows.sweep import sweep

    cfg = get_settings()
    return [
        (ingest_received, dict(
            name="on-file-received",
            description="Runs when a file is received (inbox watcher or batch endpoint).",
            tags=["tandem", "events"],
            triggers=[DeploymentEventTrigger(
                name="tandem file received",
                expect={FILE_RECEIVED},
                for_each={LABEL_CLINIC},
                posture="Reactive",
                threshold=1,
                within=dt.timedelta(seconds=cfg.ingest_window_seconds),
                parameters={
                    "clinic_id": "{{ event.resource['" + LABEL_CLINIC + "'] }}",
                    "path": "{{ event.resource['" + LABEL_FILE + "'] }}",
                    "trigger": "{{ event.resource['" + LABEL_TRIGGER + "'] }}",
                },
            )],
        )),
        (aggregate_on_batches, dict(
            name="on-batch-finished",
            description="Re-publishes the marts after batches land, coalescing bursts.",
            tags=["tandem", "events"],
            concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="ENQUEUE"),
            triggers=[DeploymentEventTrigger(
                name="tandem batch finished",
                expect={BATCH_ANY, MARTS_STALE},
                posture="Reactive",
                threshold=1,
                within=dt.timedelta(seconds=cfg.aggregate_window_seconds),
            )],
        )),
        (ingest, dict(
            name="manual", tags=["tandem"],
            description="Re-run files by hand: parameters paths, clinic_id, trigger.",
        )),
        (aggregate, dict(
            name="manual", tags=["tandem"],
            description="Rebuild and publish the marts by hand.",
        )),
        (reprocess_flow, dict(
            name="manual", tags=["tandem", "repair"],
            description="Validate quarantined rows again after a contract or roster fix "
                        "(parameters clinics, batches, reasons; the dashboard's quality "
                        "pages ask for it).",
        )),
        (republish_flow, dict(
            name="manual", tags=["tandem", "repair"],
            description="Publish the marts as of a past date (parameter as_of).",
        )),
        (sweep, dict(
            name="nightly", tags=["tandem", "schedule"],
            description="Ingests what events missed; retries failed files after a fix; "
                        "compacts the lake and expires old snapshots.",
            schedules=[Cron(cfg.sweep_cron, timezone=cfg.timezone)],
        )),
        (quality_summary, dict(
            name="daily", tags=["tandem", "schedule"],
            description="Writes the daily data-quality summary.",
            schedules=[Cron(cfg.quality_cron, timezone=cfg.timezone)],
        )),
    ]


def build_deployments() -> list:
    """Every deployment, for a runner that serves them in this process (``tandem serve``)."""
    return [fl.to_deployment(**kw) for fl, kw in deployment_specs()]


def deploy_to_pool(pool: str) -> list[str]:
    """Every deployment registered with a ``process`` work pool (made if missing): any number
    of ``tandem worker`` processes, on any machine that reaches the Prefect server, the lake
    and TANDEM_HOME, run them. Flows are found by module path, so each worker needs Tandem
    installed, nothing else. Returns the deployment ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    ids = [str(fl.deploy(**kw, work_pool_name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
                         build=False, push=False, print_next_steps=False,
                         ignore_warnings=True))
           for fl, kw in deployment_specs()]
    _crash_silent_runs()
    return ids


def _crash_silent_runs() -> None:
    """A flow run whose worker died without a word (SIGTERM, a lost machine) would show as
    running for ever and keep its files claimed: Prefect's own recipe marks a run that has
    sent no heartbeat for a while as crashed (workers send them: ``tandem worker``)."""
    from prefect.automations import Automation
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    name = "tandem: crash flow runs without heartbeats"
    with contextlib.suppress(ValueError):  # ValueError: no automation of that name yet
        Automation.read(name=name)
        return
    Automation(
        name=name,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed", "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=HEARTBEAT_SECONDS * 2),
        ),
        actions=[ChangeFlowRunState(state="CRASHED",
                                    message="No heartbeat from its worker: crashed")],
    ).create()


def main(argv: list[str] | None = None) -> None:
    """Keep the notification automations in step with the settings, then serve every
    deployment until interrupted (``tandem serve`` starts this), or, with ``--work-pool
    NAME``, register them with that pool and wait (workers run them)."""
    import argparse
    import signal
    import threading

    from flows.notify import sync_automations

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--work-pool", default=None)
    args = parser.parse_args(argv)
    try:
        sync_automations(get_settings())
    except Exception:  # noqa: BLE001 - notifications must not stop the pipeline
        logging.getLogger(__name__).exception("could not set up the notification automations")
    if args.work_pool is None:
        from prefect import serve

        serve(*build_deployments(), pause_on_shutdown=False, print_starting_message=False,
              limit=16)
        return
    # By their module's name (run as a script, this module is __main__): workers import them
    from flows import deployments as module

    module.deploy_to_pool(args.work_pool)
    print(f"deployments registered with work pool {args.work_pool}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":  # pragma: no cover
    main()
