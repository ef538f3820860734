"""Loads (quality teams): every received file with clinic, hash, time, status and row
accounting; failed files with reasons; quarantined rows, filterable and downloadable; and
the repairs (re-validate quarantined rows, republish as of a date) asked of the service."""

from __future__ import annotations

import datetime as dt

import polars as pl
import streamlit as st

from dashboards import auth, repairs, ui
from dashboards.queries import query

settings, user, snapshot = ui.page_context(roles=("quality", "admin"))
st.title("Loads and quarantine")
ui.snapshot_caption(snapshot)
if "audit_batch" not in snapshot.tables:
    st.info("No load records in this snapshot.")
    st.stop()
cond, params = ui.clinic_sql(user)
batches = query(snapshot, f"""
    SELECT batch_id, clinic_id, source_name, content_sha256, received_at, finished_at, status,
           reason, rows_received, rows_loaded, rows_quarantined, rows_duplicate, rows_replaced,
           replaces_batch_id, trigger
    FROM audit_batch WHERE clinic_id IS NULL OR {cond}
    ORDER BY batch_id DESC""", params)  # noqa: S608 - cond is ours
if not user.all_clinics:  # files whose clinic could not be read belong to nobody's clinic
    batches = batches.filter(pl.col("clinic_id").is_not_null())

c1, c2, c3 = st.columns(3)
clinics = c1.multiselect("Clinic", sorted(batches["clinic_id"].drop_nulls().unique().to_list()),
                         key="loads_clinic")
statuses = c2.multiselect("Status", sorted(batches["status"].unique().to_list()),
                          key="loads_status")
days = c3.number_input("Received in the last N days (0 = all)", min_value=0, value=0, step=30,
                       key="loads_days")
view = batches
if clinics:
    view = view.filter(pl.col("clinic_id").is_in(clinics))
if statuses:
    view = view.filter(pl.col("status").is_in(statuses))
if days:
    since = snapshot.published_at - dt.timedelta(days=int(days))
    view = view.filter(pl.col("received_at") >= since)

m = st.columns(4)
m[0].metric("Files", f"{view.height:,}")
m[1].metric("Rows loaded", f"{int(view['rows_loaded'].sum()):,}")
m[2].metric("Rows quarantined", f"{int(view['rows_quarantined'].sum()):,}")
m[3].metric("Failed files", f"{int((view['status'] == 'failed').sum()):,}")

st.subheader("Every batch")
st.dataframe(view, hide_index=True, column_config={
    "content_sha256": st.column_config.TextColumn("sha256", width="small"),
    "received_at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    "finished_at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")})
ui.download(view, "Download batches (CSV)", "batches.csv", user, settings, "audit_batch",
            key="dl_batches")

st.subheader("Failed files")
failed = view.filter(pl.col("status") == "failed")
if failed.is_empty():
    st.caption("No failed files in this selection.")
else:
    st.dataframe(failed.select("batch_id", "clinic_id", "source_name", "received_at", "reason"),
                 hide_index=True)


def quarantined_rows() -> list[str]:
    """The quarantined rows, filterable; returns the rules seen (for the repairs)."""
    if "audit_quarantine" not in snapshot.tables:
        st.caption("No quarantine table in this snapshot.")
        return []
    rule_sql = f"SELECT DISTINCT rule FROM audit_quarantine WHERE {cond} ORDER BY 1"  # noqa: S608 - clauses are fixed text with ? placeholders
    rules = query(snapshot, rule_sql, params)["rule"].to_list()
    q1, q2, q3 = st.columns(3)
    rule = q1.multiselect("Rule", rules, key="q_rule")
    batch = q2.text_input("Batch id", key="q_batch")
    text = q3.text_input("Reason contains", key="q_text")
    where, args = [cond], list(params)
    if clinics:
        where.append("list_contains(?::VARCHAR[], clinic_id)")
        args.append(clinics)
    if rule:
        where.append("list_contains(?::VARCHAR[], rule)")
        args.append(rule)
    if batch.strip().isdigit():
        where.append("batch_id = ?")
        args.append(int(batch))
    if text.strip():
        where.append("reason ILIKE ?")
        args.append(f"%{text.strip()}%")
    rows = query(snapshot, f"""
        SELECT batch_id, clinic_id, source_row, rule, column_name, reason, raw_values,
               quarantined_at
        FROM audit_quarantine WHERE {' AND '.join(where)}
        ORDER BY batch_id, source_row, rule LIMIT 100000""", tuple(args))  # noqa: S608 - clauses are fixed text with ? placeholders
    auth.audit(settings, user, "view", what="audit_quarantine", rows=rows.height,
               filters={"clinics": clinics, "rules": rule, "batch": batch, "text": text})
    st.caption(f"{rows.height:,} quarantined rows (client ids in raw values are pseudonymised).")
    st.dataframe(rows, hide_index=True)
    ui.download(rows, "Download quarantined rows (CSV)", "quarantine.csv", user, settings,
                "audit_quarantine", key="dl_quarantine")
    return rules


st.subheader("Quarantined rows")
seen_rules = quarantined_rows()
repairs.panel(settings, user, sorted(batches["clinic_id"].drop_nulls().unique().to_list()),
              seen_rules, snapshot.published_at.date())
