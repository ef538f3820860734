"""Validation history (quality teams): pass rates of every data-contract rule over time per
clinic, and the Great Expectations report of each batch."""

from __future__ import annotations

import json

import altair as alt
import polars as pl
import streamlit as st

from dashboards import auth, ui
from dashboards.queries import query

settings, user, snapshot = ui.page_context(roles=("quality", "admin"))
st.title("Validation history")
ui.snapshot_caption(snapshot)
if "audit_validation_result" not in snapshot.tables or "audit_batch" not in snapshot.tables:
    st.info("No validation results in this snapshot.")
    st.stop()
cond, params = ui.clinic_sql(user, "b.clinic_id")
results = query(snapshot, f"""
    SELECT b.clinic_id, date_trunc('month', v.validated_at)::DATE AS month, v.rule,
           count(*) AS batches, count(*) FILTER (WHERE v.success) AS passed,
           sum(v.element_count)::BIGINT AS rows_checked,
           sum(v.unexpected_count)::BIGINT AS rows_failing
    FROM audit_validation_result v JOIN audit_batch b USING (batch_id)
    WHERE {cond} GROUP BY ALL ORDER BY 1, 2, 3""", params)  # noqa: S608 - cond is ours
if results.is_empty():
    st.info("No validation results for your clinics.")
    st.stop()
results = results.with_columns((pl.col("passed") / pl.col("batches") * 100).alias("pass_rate"))
c1, c2 = st.columns(2)
clinics = sorted(results["clinic_id"].drop_nulls().unique().to_list())
clinic = c1.selectbox("Clinic (contract)", clinics, key="val_clinic")
rules = sorted(results["rule"].unique().to_list())
chosen = c2.multiselect("Rules", rules, key="val_rules")
part = results.filter(pl.col("clinic_id") == clinic)
if chosen:
    part = part.filter(pl.col("rule").is_in(chosen))

summary = part.group_by("rule").agg(pl.col("batches").sum(), pl.col("passed").sum(),
                                    pl.col("rows_failing").sum()).with_columns(
    (pl.col("passed") / pl.col("batches") * 100).round(1).alias("pass rate (% of batches)"))
st.subheader(f"Rules of the {clinic} contract")
st.dataframe(summary.sort("rule"), hide_index=True)
ui.show(alt.Chart(part.to_pandas()).mark_line(point=True).encode(
    x=alt.X("month:T", title="month validated"),
    y=alt.Y("pass_rate:Q", title="batches passing (%)", scale=alt.Scale(domain=[0, 100])),
    color=alt.Color("rule:N", title="rule"),
    tooltip=["month:T", "rule", "batches", "passed", "rows_failing"],
).properties(height=300, title=f"Pass rate by month, {clinic} "
             f"(n = {int(part['batches'].sum()):,} rule checks)"), width="stretch")

st.subheader("Great Expectations reports")
bcond, bparams = ui.clinic_sql(user)
batches = query(snapshot, f"""
    SELECT batch_id, source_name, status, received_at FROM audit_batch
    WHERE clinic_id = ? AND {bcond} ORDER BY batch_id DESC""", (clinic, *bparams))  # noqa: S608 - clauses are fixed text with ? placeholders
if batches.is_empty():
    st.caption("No batches.")
    st.stop()
pick = st.selectbox("Batch", batches["batch_id"].to_list(), key="val_batch",
                    format_func=lambda b: f"{b}: " + batches.filter(
                        pl.col("batch_id") == b)["source_name"][0])
detail = query(snapshot, """
    SELECT rule, expectation_type, column_name, success, element_count, unexpected_count,
           validated_at FROM audit_validation_result WHERE batch_id = ? ORDER BY rule""",
               (pick,))
st.dataframe(detail, hide_index=True)
report = settings.validation_dir / f"batch-{int(pick):08d}.json"
if report.exists():
    auth.audit(settings, user, "view", what="gx_report", batch_id=int(pick))
    with st.expander("Full Great Expectations validation result (JSON)"):
        st.json(json.loads(report.read_text(encoding="utf-8")), expanded=False)
    st.download_button("Download the report (JSON)", report.read_bytes(),
                       file_name=report.name, mime="application/json", key="dl_gx",
                       on_click=auth.audit, args=(settings, user, "download"),
                       kwargs={"what": "gx_report", "batch_id": int(pick),
                               "file": report.name})
else:
    st.caption("The full report of this batch is not kept on this host.")
