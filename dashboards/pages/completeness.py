"""Completeness (quality teams): per clinic and therapist, the share of sessions with an
outcome measure and with an alliance measure."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.data import query

settings, user, snapshot = ui.page_context(roles=("quality", "admin"))
st.title("Completeness")
ui.snapshot_caption(snapshot)
if not {"episode_session", "episode_measure", "episode_outcome"} <= set(snapshot.tables):
    st.info("Completeness needs episode_session, episode_measure and episode_outcome.")
    st.stop()
cond, params = ui.clinic_sql(user, "s.clinic_id")
# Sessions with an outcome: per episode, the most scored outcome administrations (one outcome
# family per clinic); sessions with an alliance measure: rows of session_alliance (SRS), or
# WAI-SR administrations counted in episode_measure.
alliance_sql = ("SELECT episode_id, count(*) AS n FROM session_alliance GROUP BY 1"
                if "session_alliance" in snapshot.tables
                else "SELECT NULL::VARCHAR AS episode_id, 0 AS n WHERE FALSE")
comp = query(snapshot, f"""
    WITH outcome_inst AS (SELECT DISTINCT instrument FROM episode_outcome),
    per_ep AS (
        SELECT s.episode_id, any_value(s.clinic_id) AS clinic_id,
               mode(s.therapist_id) AS therapist_id, count(*) AS sessions
        FROM episode_session s WHERE {cond} GROUP BY 1),
    outc AS (
        SELECT episode_id, max(n_scores) AS n FROM episode_measure
        WHERE instrument IN (SELECT instrument FROM outcome_inst) GROUP BY 1),
    srs AS ({alliance_sql}),
    wai AS (
        SELECT episode_id, max(n_scores) AS n FROM episode_measure
        WHERE instrument = 'WAISR' GROUP BY 1)
    SELECT p.clinic_id, p.therapist_id, sum(p.sessions)::BIGINT AS sessions,
           sum(least(coalesce(o.n, 0), p.sessions))::BIGINT AS with_outcome,
           sum(least(greatest(coalesce(a.n, 0), coalesce(w.n, 0)), p.sessions))::BIGINT
               AS with_alliance
    FROM per_ep p LEFT JOIN outc o USING (episode_id) LEFT JOIN srs a USING (episode_id)
    LEFT JOIN wai w USING (episode_id)
    GROUP BY ALL ORDER BY 1, 2""", params)  # noqa: S608 - cond is ours
if comp.is_empty():
    st.info("No sessions for your clinics.")
    st.stop()
comp = comp.with_columns(
    (pl.col("with_outcome") / pl.col("sessions") * 100).round(1).alias("outcome_pct"),
    (pl.col("with_alliance") / pl.col("sessions") * 100).round(1).alias("alliance_pct"))
per_clinic = comp.group_by("clinic_id").agg(pl.col("sessions", "with_outcome",
                                                   "with_alliance").sum()).with_columns(
    (pl.col("with_outcome") / pl.col("sessions") * 100).round(1).alias("outcome_pct"),
    (pl.col("with_alliance") / pl.col("sessions") * 100).round(1).alias("alliance_pct"),
).sort("clinic_id")
st.subheader("Per clinic")
st.dataframe(per_clinic.rename({"outcome_pct": "% with outcome",
                                "alliance_pct": "% with alliance"}), hide_index=True)
st.subheader("Per therapist")
long = comp.unpivot(["outcome_pct", "alliance_pct"], index=["clinic_id", "therapist_id",
                                                            "sessions"],
                    variable_name="measure", value_name="pct").with_columns(
    pl.col("measure").replace({"outcome_pct": "outcome", "alliance_pct": "alliance"}),
    (pl.col("clinic_id") + " / " + pl.col("therapist_id")).alias("therapist"))
st.altair_chart(alt.Chart(long.to_pandas()).mark_bar().encode(
    y=alt.Y("therapist:N", title=None), x=alt.X("pct:Q", title="% of sessions with the measure",
                                                scale=alt.Scale(domain=[0, 100])),
    color=alt.Color("measure:N"), yOffset="measure:N",
    tooltip=["therapist", "measure", "pct", "sessions"],
).properties(title=f"Completeness by therapist (n = {int(comp['sessions'].sum()):,} sessions)"),
    width="stretch")
st.dataframe(comp.rename({"outcome_pct": "% with outcome", "alliance_pct": "% with alliance"}),
             hide_index=True)
st.caption("A session counts as having an outcome when an outcome measure was scored; the "
           "count per episode is the scored administrations of its main outcome measure.")
