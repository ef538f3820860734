"""Overview for directors: headline outcome rates with intervals, the funnel, the monthly
trend and data freshness per clinic, for one clinic (or all the user may see)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.data import as_of, query, table

settings, user, snapshot = ui.page_context()
st.title("Overview")
ui.snapshot_caption(snapshot)

outcomes = ui.interval_columns(ui.scope(table(snapshot, "dir_outcomes"), user))
nhs = ui.scope(table(snapshot, "dir_nhs_talking_therapies"), user)
active = ui.scope(table(snapshot, "dir_off_track"), user)
if outcomes.is_empty():
    st.info("No outcome figures published for your clinics yet.")
    st.stop()

clinic = ui.clinic_picker(user, outcomes["clinic_id"].drop_nulls().unique().to_list())
instruments = sorted(outcomes["instrument"].unique().to_list())
has_nhs = not nhs.is_empty() and ui.first_row(nhs, clinic_id=clinic, month=None) is not None
choices = (["PHQ-9 + GAD-7 (NHS Talking Therapies)"] if has_nhs else []) + instruments
measure = st.sidebar.selectbox("Outcome measure", choices, key="overview_measure")
nhs_mode = measure.startswith("PHQ-9 + GAD-7")
clinic_label = clinic or "all clinics"

# Headline figures ---------------------------------------------------------------------
st.subheader(f"Headline: {clinic_label}, {measure}")
cols = st.columns(5)
act_inst = "PHQ9" if nhs_mode else measure
act_row = ui.first_row(active, clinic_id=clinic, therapist_id=None, instrument=act_inst)
ui.count_metric(cols[0], "Active clients", act_row, "n_clients",
                f"with an open episode on {as_of(snapshot)}")
if nhs_mode:
    row = ui.first_row(nhs, clinic_id=clinic, month=None)
    ui.count_metric(cols[1], "Finished episodes", row, "finished", "≥ 2 attended sessions")
    ui.rate_metric(cols[2], "Recovery rate", row, "recovery_rate", "caseness_at_start",
                   "at caseness")
    ui.rate_metric(cols[3], "Reliable improvement", row, "reliable_improvement_rate", "finished")
    ui.rate_metric(cols[4], "Reliable deterioration", row, "reliable_deterioration_rate",
                   "finished")
else:
    row = ui.first_row(outcomes, clinic_id=clinic, month=None, instrument=measure)
    ui.count_metric(cols[1], "Finished episodes", row, "n", "with a first and last score")
    ui.rate_metric(cols[2], "Recovered", row, "recovered_rate", "n")
    ui.rate_metric(cols[3], "Reliably improved (not recovered)", row, "improved_rate", "n")
    ui.rate_metric(cols[4], "Reliably deteriorated", row, "deteriorated_rate", "n")

# Funnel ---------------------------------------------------------------------------------
st.subheader("Funnel: the same denominators behind the rates")
if nhs_mode and row is not None:
    stages = [("Started (episodes)", "episodes"), ("Finished treatment", "finished"),
              ("At caseness at start", "caseness_at_start"), ("Recovered", "recovered")]
else:
    stages = [("Finished with first and last score", "n"), ("Recovered", "recovered"),
              ("Reliably improved, not recovered", "improved"),
              ("Reliably deteriorated", "deteriorated")]
    st.caption("For this measure the published marts give no count of started episodes or "
               "caseness at start; the funnel starts at finished episodes.")
funnel = pl.DataFrame({
    "stage": [s for s, _ in stages],
    "episodes": [ui.fmt_count(row or {}, c) if row else "–" for _, c in stages],
})
st.dataframe(funnel, hide_index=True, width="content")
if row is not None and not ui.is_suppressed(row):
    data = pl.DataFrame({"stage": [s for s, _ in stages],
                         "episodes": [int(row.get(c) or 0) for _, c in stages]})
    st.altair_chart(
        alt.Chart(data.to_pandas()).mark_bar().encode(
            y=alt.Y("stage:N", sort=None, title=None, axis=alt.Axis(labelLimit=300)),
            x=alt.X("episodes:Q", title="episodes (count)"),
            tooltip=["stage", "episodes"],
        ).properties(height=160, title=f"Funnel, {clinic_label}"),
        width="stretch",
    )

# Trend by month -------------------------------------------------------------------------
st.subheader("Trend by month (month the episode ended)")
if nhs_mode:
    monthly = nhs.filter(pl.col("month").is_not_null() & (
        pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic))
    prefix, n_col, rate_label = "recovery_rate", "finished", "recovery rate"
else:
    monthly = outcomes.filter(
        pl.col("month").is_not_null() & (pl.col("instrument") == measure)
        & (pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic))
    prefix, n_col, rate_label = "recovered_rate", "n", "recovered"
if monthly.is_empty():
    st.caption("No monthly figures for this selection (monthly cells exist per clinic).")
else:
    months = sorted(monthly["month"].to_list())
    if len(months) > 1:
        start, end = st.select_slider("Period", options=months, value=(months[0], months[-1]),
                                      format_func=lambda d: f"{d:%Y-%m}", key="overview_period")
        monthly = monthly.filter(pl.col("month").is_between(start, end))
    shown = monthly.filter(~pl.col("suppressed")).sort("month")
    ui.suppressed_note(monthly, "months")
    if shown.height:
        df = shown.select("month", pl.col(prefix) * 100, pl.col(f"{prefix}_ci_low") * 100,
                          pl.col(f"{prefix}_ci_high") * 100, pl.col(n_col).alias("n")).to_pandas()
        base = alt.Chart(df).encode(x=alt.X("month:T", title="month"))
        band = base.mark_area(opacity=0.25).encode(
            y=alt.Y(f"{prefix}_ci_low:Q", title=f"{rate_label} (% of episodes, 95% CI)"),
            y2=f"{prefix}_ci_high:Q")
        line = base.mark_line(point=True).encode(
            y=f"{prefix}:Q", tooltip=["month:T", alt.Tooltip(f"{prefix}:Q", format=".1f"), "n:Q"])
        bars = base.mark_bar(opacity=0.5).encode(y=alt.Y("n:Q", title="episodes (n)"))
        st.altair_chart((band + line).properties(
            height=260, title=f"{rate_label.capitalize()} by month, {clinic_label} "
            f"(n = {int(shown['n' if 'n' in shown.columns else n_col].sum()):,} episodes)"),
            width="stretch")
        st.altair_chart(bars.properties(height=120, title="Episodes per month (n)"),
                        width="stretch")
    table_rows = [{"month": f"{r['month']:%Y-%m}", "n": ui.fmt_count(r, n_col),
                   rate_label: ui.fmt_rate(r, prefix)}
                  for r in monthly.sort("month").iter_rows(named=True)]
    with st.expander("Monthly figures"):
        st.dataframe(pl.DataFrame(table_rows), hide_index=True)

# Freshness ------------------------------------------------------------------------------
st.subheader("Data freshness per clinic")
cond, params = ui.clinic_sql(user)
fresh = pl.DataFrame() if "audit_batch" not in snapshot.tables else query(snapshot, f"""
    SELECT clinic_id,
           max(received_at) FILTER (WHERE status = 'loaded') AS last_loaded_file,
           max(received_at) AS last_file_received,
           arg_max(status, received_at) AS last_file_status,
           count(*) FILTER (WHERE status = 'failed') AS failed_files,
           date_diff('day', max(received_at) FILTER (WHERE status = 'loaded'),
                     ?::TIMESTAMPTZ) AS days_since_last_load
    FROM audit_batch WHERE clinic_id IS NOT NULL AND {cond}
    GROUP BY clinic_id ORDER BY clinic_id""", (snapshot.published_at, *params))  # noqa: S608
if fresh.is_empty():
    st.caption("No load records published.")
else:
    st.dataframe(
        fresh,
        hide_index=True,
        column_config={c: st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")
                       for c in ("last_loaded_file", "last_file_received")},
    )
