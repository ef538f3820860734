"""The quality pages' repairs: "Re-validate quarantined rows" and "Republish as of DATE".

Only for the quality and admin roles. Each button asks the service for a flow run of a
repair deployment (dashboards.service; the dashboard never runs the pipeline), shows the
run's name, state and Prefect page, and appends the request (who, role, action,
parameters, flow run id, or why it could not be made) to the access audit log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import streamlit as st

from dashboards import auth, service
from tandem.core.settings import Settings

ROLES = ("quality", "admin")
_RUNS = "repair_runs"


def _ask(settings: Settings, user: auth.User, action: str, flow_deployment: tuple[str, str],
         parameters: dict) -> None:
    flow, deployment = flow_deployment
    try:
        run = service.request_run(flow, deployment, parameters)
    except service.ServiceUnavailable as exc:
        auth.audit(settings, user, action, deployment=f"{flow}/{deployment}",
                   parameters=parameters, flow_run_id=None, error=str(exc))
        st.error(str(exc))
        return
    auth.audit(settings, user, action, deployment=run.deployment, parameters=parameters,
               flow_run_id=run.id, flow_run_name=run.name)
    st.session_state.setdefault(_RUNS, []).insert(0, run)
    st.success(f"Asked the service: flow run **{run.name}** of {run.deployment} "
               f"({run.state}). [Open it in Prefect]({run.url})")


def _batches(text: str) -> list[int] | None:
    parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        return None
    return [int(p) for p in parts]


def panel(settings: Settings, user: auth.User, clinics: Sequence[str], rules: Sequence[str],
          as_of: dt.date) -> None:
    """The repair actions (nothing for other roles)."""
    if user.role not in ROLES:
        return
    st.subheader("Repairs")
    st.caption("After a contract or roster fix, ask the service to validate the quarantined "
               "rows again (rows that now pass are loaded once, and the marts re-publish), or "
               "to publish the marts as of a past date. Each request is audited.")
    try:
        service.api_url()
    except service.ServiceUnavailable as exc:
        st.info(str(exc))
        return
    left, right = st.columns(2)
    with left.form("repair_reprocess"):
        chosen = st.multiselect("Clinics (none = all yours)", list(clinics), key="rp_clinics")
        reasons = st.multiselect("Rules (none = every rule)", list(rules), key="rp_reasons")
        batch_text = st.text_input("Batch ids, comma-separated (empty = every batch)",
                                   key="rp_batches")
        revalidate = st.form_submit_button("Re-validate quarantined rows", key="rp_go")
    if revalidate:
        batches = _batches(batch_text)
        if batches is None:
            left.error(f"'{batch_text}' is not a list of batch ids (e.g. 12, 15).")
        else:
            scope = list(chosen) or (None if user.all_clinics else list(user.clinics or ()))
            with left:
                _ask(settings, user, "request_reprocess", service.REPROCESS, {
                    "clinics": scope, "batches": batches or None,
                    "reasons": list(reasons) or None, "requested_by": user.username})
    with right.form("repair_republish"):
        date = st.date_input("As of", value=as_of, max_value=dt.date.today(), key="rb_as_of")
        republish = st.form_submit_button("Republish as of this date", key="rb_go")
    if republish:
        with right:
            _ask(settings, user, "request_republish", service.REPUBLISH,
                 {"as_of": date.isoformat(), "requested_by": user.username})
    runs = st.session_state.get(_RUNS) or []
    if runs:
        st.caption("Requested in this session (state as the Prefect server tells it now):")
        st.dataframe([{"flow run": r.name, "deployment": r.deployment,
                       "state": service.run_state(r.id), "page": r.url} for r in runs[:10]],
                     hide_index=True, column_config={"page": st.column_config.LinkColumn()})
