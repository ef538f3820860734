"""Overview for directors: headline outcome rates with intervals, the funnel, the monthly
trend and data freshness per clinic, for one clinic (or all the user may see)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import as_of, query, table

settings, user, snapshot = ui.page_context()
st.title("Overview")
ui.snapshot_caption(snapshot)

outcomes = ui.scope(table(snapshot, "dir_outcomes"), user)
periods = ui.scope(table(snapshot, "dir_outcomes_period"), user)
funnels = ui.scope(table(snapshot, "dir_funnel"), user)
nhs = ui.scope(table(snapshot, "dir_nhs_talking_therapies"), user)
nhs_periods = ui.scope(table(snapshot, "dir_nhs_talking_therapies_period"), user)
activity = ui.scope(table(snapshot, "dir_activity"), user)
active = ui.scope(table(snapshot, "dir_off_track"), user)
definitions = table(snapshot, "outcome_definitions")
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

# Period: all time, a year or a quarter, each a cell of its own (never summed from months).
period_rows = nhs_periods if nhs_mode else periods
here_periods = period_rows.filter(pl.col("clinic_id").is_null() if clinic is None
                                  else pl.col("clinic_id") == clinic) if period_rows.height \
    else period_rows
options: list[tuple[str, object]] = [("all", None)]
if here_periods.height:
    for kind in ("year", "quarter"):
        starts = sorted(set(here_periods.filter(pl.col("period") == kind)["period_start"]),
                        reverse=True)
        options += [(kind, d) for d in starts]
period, period_start = st.sidebar.selectbox(
    "Period (month the episode ended)", options, key="overview_period",
    format_func=lambda o: ui.period_label(o[0], o[1]))
period_label = ui.period_label(period, period_start)


def _cell(frame: pl.DataFrame, **where: object) -> dict | None:
    """The selected period's row: all time from the base mart, else from the period mart."""
    return ui.first_row(frame, clinic_id=clinic, **where)


def _in_period(frame: pl.DataFrame, col: str) -> pl.DataFrame:
    """Monthly rows inside the selected period."""
    if period == "all" or frame.is_empty():
        return frame
    end = ui.period_end(period, period_start)
    return frame.filter((pl.col(col) >= period_start) & (pl.col(col) < end))


# Headline figures ---------------------------------------------------------------------
st.subheader(f"Headline: {clinic_label}, {measure}, {period_label}")
cols = st.columns(6)
act_inst = "PHQ9" if nhs_mode else measure
act_row = ui.first_row(active, clinic_id=clinic, therapist_id=None, instrument=act_inst)
ui.count_metric(cols[0], "Active clients", act_row, "n_clients",
                f"with an open episode on {as_of(snapshot)}")
if nhs_mode:
    row = (_cell(nhs, month=None) if period == "all"
           else _cell(nhs_periods, period=period, period_start=period_start))
    ui.count_metric(cols[1], "Finished episodes", row, "finished", "≥ 2 attended sessions")
    ui.rate_metric(cols[2], "Recovery rate", row, "recovery_rate", "caseness_at_start",
                   "at caseness")
    ui.rate_metric(cols[3], "Reliable improvement", row, "reliable_improvement_rate", "finished")
    ui.rate_metric(cols[4], "Reliable deterioration", row, "reliable_deterioration_rate",
                   "finished")
    ui.rate_metric(cols[5], "Reliable recovery", row, "reliable_recovery_rate",
                   "caseness_at_start", "at caseness")
    ui.definition_caption(definitions, "NHS_TT")
else:
    row = (_cell(outcomes, month=None, instrument=measure) if period == "all"
           else _cell(periods, period=period, period_start=period_start, instrument=measure))
    ui.count_metric(cols[1], "Finished episodes", row, "n", "with a first and last score")
    ui.rate_metric(cols[2], "Recovered", row, "recovered_rate", "n")
    ui.rate_metric(cols[3], "Reliably improved (not recovered)", row, "improved_rate", "n")
    ui.rate_metric(cols[4], "Reliably deteriorated", row, "deteriorated_rate", "n")
    ui.rate_metric(cols[5], "Harmed (into the clinical range)", row, "harmed_rate", "n")
    ui.definition_caption(definitions, measure)

# Funnel ---------------------------------------------------------------------------------
st.subheader("Funnel: the same denominators behind the rates")
if nhs_mode:
    frow = row
    stages = [("Started (episodes with PHQ-9 and GAD-7)", "episodes"),
              ("Finished treatment (≥ 2 sessions)", "finished"),
              ("At caseness at start", "caseness_at_start"), ("Recovered", "recovered")]
else:
    frow = _cell(funnels, instrument=measure, period=period, period_start=period_start)
    cutoff = "below the clinical cutoff" if measure == "ORS" else "at caseness"
    stages = [(f"Started (episodes with an {measure})", "episodes"),
              ("Finished (≥ 2 sessions, first and last score)", "finished"),
              (f"At start {cutoff}", "caseness_at_start"), ("Recovered", "recovered")]
funnel = pl.DataFrame({
    "stage": [s for s, _ in stages],
    "episodes": [ui.fmt_count(frow, c) if frow else "–" for _, c in stages],
})
st.dataframe(funnel, hide_index=True, width="content")
if frow is not None and not ui.is_suppressed(frow):
    data = pl.DataFrame({"stage": [s for s, _ in stages],
                         "episodes": [int(frow.get(c) or 0) for _, c in stages]})
    bars = alt.Chart(data.to_pandas()).encode(
        y=alt.Y("stage:N", sort=None, title=None,
                axis=alt.Axis(labelLimit=360, labelOverlap=False)),
        x=alt.X("episodes:Q", title="episodes (count)"),
        tooltip=["stage", "episodes"])
    ui.show(
        (bars.mark_bar() + bars.mark_text(align="left", dx=4).encode(text="episodes:Q"))
        .properties(height=44 * len(stages) + 40,
                    title=alt.TitleParams(f"Funnel, {clinic_label}, {period_label}",
                                          anchor="start")),
        width="stretch",
    )
    rate = "recovery_rate"
    st.caption(f"Recovery rate: recovered / at caseness at start = {ui.fmt_rate(frow, rate)}.")
elif frow is not None:
    st.caption("This funnel is suppressed (fewer than the minimum number of clients).")

# Trend by month -------------------------------------------------------------------------
st.subheader("Trend by month (month the episode ended)")
if nhs_mode:
    monthly = nhs.filter(pl.col("month").is_not_null() & (
        pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic))
    prefix, n_col, rate_label = "recovery_rate", "finished", "recovery rate"
elif clinic is None:
    monthly = funnels.filter((pl.col("period") == "month") & pl.col("clinic_id").is_null()
                             & (pl.col("instrument") == measure)).rename(
        {"period_start": "month", "finished": "n"})
    prefix, n_col, rate_label = "recovered_rate", "n", "recovered"
else:
    monthly = outcomes.filter(
        pl.col("month").is_not_null() & (pl.col("instrument") == measure)
        & (pl.col("clinic_id") == clinic))
    prefix, n_col, rate_label = "recovered_rate", "n", "recovered"
monthly = _in_period(monthly, "month")
if monthly.is_empty():
    st.caption("No monthly figures for this selection.")
else:
    shown = monthly.filter(~pl.col("suppressed")).sort("month")
    ui.suppressed_note(monthly, "months")
    if shown.height:
        df = shown.select(
            pl.col("month").dt.strftime("%Y-%m").alias("month"), pl.col(prefix) * 100,
            pl.col(f"{prefix}_ci_low") * 100, pl.col(f"{prefix}_ci_high") * 100,
            pl.col(n_col).cast(pl.Int64).alias("n")).to_pandas()
        x = alt.X("month:O", title="month the episode ended", axis=alt.Axis(labelAngle=-45))
        base = alt.Chart(df).encode(x=x)
        band = base.mark_area(opacity=0.25).encode(
            y=alt.Y(f"{prefix}_ci_low:Q", title=f"{rate_label} (% of episodes, 95% CI)"),
            y2=f"{prefix}_ci_high:Q")
        line = base.mark_line(point=True).encode(
            y=f"{prefix}:Q", tooltip=["month", alt.Tooltip(f"{prefix}:Q", format=".1f"), "n:Q"])
        n_shown = int(shown[n_col].sum())
        ui.show((band + line).properties(
            height=280, title=alt.TitleParams(
                f"{rate_label.capitalize()} by month (%, 95% CI)",
                subtitle=f"{clinic_label}, {period_label}; n = {n_shown:,} episodes in the "
                "months shown", anchor="start")),
            width="stretch")
        bars = base.mark_bar(color="#4c78a8").encode(
            y=alt.Y("n:Q", title="episodes (n)"), tooltip=["month", "n:Q"])
        ui.show(bars.properties(
            height=160, title=alt.TitleParams(
                "Finished episodes per month (n, the rate's denominator)", anchor="start")),
            width="stretch")
    table_rows = [{"month": f"{r['month']:%Y-%m}", "n": ui.fmt_count(r, n_col),
                   rate_label: ui.fmt_rate(r, prefix)}
                  for r in monthly.sort("month").iter_rows(named=True)]
    with st.expander("Monthly figures"):
        st.dataframe(pl.DataFrame(table_rows), hide_index=True)

# Activity -------------------------------------------------------------------------------
st.subheader("Activity by month (month of the session)")
acts = _in_period(activity.filter((pl.col("period") == "month") & (
    pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic)),
    "period_start") if activity.height else activity
if acts.is_empty():
    st.caption("No activity figures published for this selection.")
else:
    shown = acts.filter(~pl.col("suppressed")).sort("period_start")
    if shown.height:
        long = shown.select(pl.col("period_start").dt.strftime("%Y-%m").alias("month"),
                            pl.col("active_clients").cast(pl.Int64).alias("active clients"),
                            pl.col("new_episodes").cast(pl.Int64).alias("new episodes")
                            ).unpivot(index="month", variable_name="count",
                                      value_name="n").to_pandas()
        ui.show(alt.Chart(long).mark_bar().encode(
            x=alt.X("month:O", title="month", axis=alt.Axis(labelAngle=-45)),
            xOffset="count:N", y=alt.Y("n:Q", title="clients / episodes (count)"),
            color=alt.Color("count:N", title=None), tooltip=["month", "count", "n"],
        ).properties(height=220, title=alt.TitleParams(
            f"Active clients (with a session in the month) and new episodes, {clinic_label}",
            anchor="start")), width="stretch")
    ui.suppressed_note(acts, "months")

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
    GROUP BY clinic_id ORDER BY clinic_id""", (snapshot.published_at, *params))  # noqa: S608 - clauses are fixed text with ? placeholders
if fresh.is_empty():
    st.caption("No load records published.")
else:
    st.dataframe(
        fresh,
        hide_index=True,
        column_config={c: st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")
                       for c in ("last_loaded_file", "last_file_received")},
    )
