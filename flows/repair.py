"""The quality team's repairs as flows: ``reprocess`` (quarantined rows validated again
after a contract or roster fix) and ``republish`` (the marts as of a past date).

Registered as the deployments ``reprocess/manual`` and ``republish/manual``
(flows/deployments.py), so the dashboard's quality pages ask the service to run them
through Prefect's API and never run the pipeline themselves. A reprocess batch sends its
``tandem.batch.reprocessed`` event: the served ``aggregate-on-batches`` re-publishes.
"""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger

from flows.events import emit_batch_finished
from tandem.core.settings import get_settings
from tandem.pipeline.reprocess import TRIGGER, Scope, reprocess
from tandem.pipeline.republish import republish


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


@flow(name="reprocess", log_prints=True)
def reprocess_flow(clinics: list[str] | None = None, batches: list[int] | None = None,
                   reasons: list[str] | None = None, requested_by: str | None = None) -> list[dict]:
    """Validate the open quarantine (of these clinics, batches or rules) again under the
    current contracts; one summary per original batch looked at."""
    logger = get_run_logger()
    scope = Scope(tuple(clinics or ()), tuple(int(b) for b in batches or ()),
                  tuple(reasons or ()))
    results = reprocess(get_settings(), scope, flow_run_id=_flow_run_id())
    out = []
    for r in results:
        summary = r.summary()
        out.append(summary)
        logger.info("batch %s (%s): %s, %d row(s) loaded, %d quarantined again, %d unchanged",
                    r.of_batch_id, r.clinic_id, r.status, r.rows_loaded, r.requarantined,
                    r.unchanged)
        if r.batch_id is not None:
            emit_batch_finished({**summary, "status": "reprocessed"}, TRIGGER)
    if requested_by:
        logger.info("requested by %s", requested_by)
    return out


@flow(name="republish", log_prints=True)
def republish_flow(as_of: str, requested_by: str | None = None) -> dict:
    """Publish the marts as of ``as_of`` (YYYY-MM-DD) for a historical view."""
    info = republish(get_settings(), dt.date.fromisoformat(as_of))
    get_run_logger().info("published snapshot %s as of %s%s", info["version"], as_of,
                          f" (requested by {requested_by})" if requested_by else "")
    return info
