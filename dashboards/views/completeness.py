"""Completeness (quality teams): per clinic and therapist, the share of sessions with an
outcome measure and with an alliance measure."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import table

settings, user, snapshot = ui.page_context(roles=("quality", "admin"))
st.title("Completeness")
ui.snapshot_caption(snapshot)
comp_all = ui.scope(table(snapshot, "dir_completeness"), user)
if comp_all.is_empty():
    st.info("No completeness figures published for your clinics (dir_completeness).")
    st.stop()
# Exact per-session flags (episode_session.has_outcome / has_alliance), summed per cell.
comp = comp_all.filter(pl.col("clinic_id").is_not_null())


def _row(r: dict) -> dict:
    return {"clinic": r["clinic_id"], "therapist": r["therapist_id"] or "all therapists",
            "sessions (n)": ui.fmt_count(r, "sessions"),
            "% with outcome (95% CI)": ui.fmt_rate(r, "outcome_rate"),
            "% with alliance (95% CI)": ui.fmt_rate(r, "alliance_rate")}


st.subheader("Per clinic")
per_clinic = comp.filter(pl.col("therapist_id").is_null()).sort("clinic_id")
st.dataframe(pl.DataFrame([_row(r) for r in per_clinic.iter_rows(named=True)]),
             hide_index=True)
st.subheader("Per therapist")
per_ther = comp.filter(pl.col("therapist_id").is_not_null()).sort("clinic_id", "therapist_id")
shown = per_ther.filter(~pl.col("suppressed"))
if shown.height:
    long = shown.select(
        (pl.col("clinic_id") + " / " + pl.col("therapist_id")).alias("therapist"),
        pl.col("sessions").cast(pl.Int64), (pl.col("outcome_rate") * 100).alias("outcome"),
        (pl.col("alliance_rate") * 100).alias("alliance"),
    ).unpivot(["outcome", "alliance"], index=["therapist", "sessions"],
              variable_name="measure", value_name="pct")
    ui.show(alt.Chart(long.to_pandas()).mark_bar().encode(
        y=alt.Y("therapist:N", title=None), x=alt.X("pct:Q", title="% of sessions with the measure",
                                                    scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("measure:N"), yOffset="measure:N",
        tooltip=["therapist", "measure", alt.Tooltip("pct:Q", format=".1f"), "sessions"],
    ).properties(height=max(160, 26 * shown.height), title=alt.TitleParams(
        f"Completeness by therapist (n = {int(shown['sessions'].sum()):,} sessions)",
        anchor="start")), width="stretch")
ui.suppressed_note(per_ther, "therapists")
st.dataframe(pl.DataFrame([_row(r) for r in per_ther.iter_rows(named=True)]), hide_index=True)
st.caption("Exact: a session counts as having an outcome (alliance) measure when an outcome "
           "(alliance) questionnaire was scored at it (episode_session.has_outcome / "
           "has_alliance).")
