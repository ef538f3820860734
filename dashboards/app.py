"""Tandem dashboard entry point: `tandem dashboard` (streamlit run dashboards/app.py)."""

from __future__ import annotations

import streamlit as st

from dashboards.data import current_snapshot, table

st.set_page_config(page_title="Tandem", layout="wide")
st.title("Tandem: outcomes and alliance")

snapshot = current_snapshot()
if snapshot is None:
    st.info("No data published yet. Run `tandem ingest PATH...` then `tandem aggregate`.")
    st.stop()

st.caption(f"Data published {snapshot.published_at:%Y-%m-%d %H:%M} UTC (snapshot {snapshot.version})")

measures = table(snapshot, "episode_measure")
ors = measures.filter(measures["instrument"] == "ORS") if measures.height else measures

st.header("ORS change per client episode")
if ors.height == 0:
    st.write("No ORS episodes yet.")
else:
    c1, c2, c3 = st.columns(3)
    c1.metric("Episodes with ORS", f"{ors.height:,}")
    c2.metric("Mean first ORS", f"{ors['first_score'].mean():.1f}")
    c3.metric("Mean change (points)", f"{ors['change'].mean():+.1f}")
    st.dataframe(
        ors.select("clinic_id", "therapist_id", "episode_id", "first_date", "first_score",
                   "last_date", "last_score", "change", "sessions"),
        hide_index=True,
    )

st.header("Mean SRS per therapist")
srs = table(snapshot, "dir_therapist_alliance")
if srs.height == 0:
    st.write("No SRS yet.")
else:
    st.dataframe(srs, hide_index=True)
