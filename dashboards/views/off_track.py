"""Off-track episodes waiting for review: counts and rates for everyone; the list of
episodes only for roles allowed row-level data (quality, admin), and every view is audited."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import auth, ui
from dashboards.queries import as_of, query, table

settings, user, snapshot = ui.page_context()
st.title("Off-track episodes")
ui.snapshot_caption(snapshot)
st.caption(f"Open episodes on {as_of(snapshot)} whose improvement so far is well below what is "
           "expected for clients with the same intake score, or that reliably deteriorated "
           "(each measure's own reliable-change definition, see *Outcome definitions*). An open "
           "episode with a single score has no trajectory yet: it is counted as open but is "
           "neither on nor off track; the rate is over episodes with at least two scores.")

rates = ui.scope(table(snapshot, "dir_off_track"), user)
if rates.is_empty():
    st.info("No open episodes published for your clinics.")
    st.stop()
clinic = ui.clinic_picker(user, rates["clinic_id"].drop_nulls().to_list(), key="off_clinic")
top = rates.filter(pl.col("therapist_id").is_null()
                   & (pl.col("clinic_id") == clinic if clinic else pl.col("clinic_id").is_null()))
cols = st.columns(max(top.height, 1))
for col, r in zip(cols, top.sort("instrument").iter_rows(named=True), strict=False):
    col.metric(f"Off track ({r['instrument']})", ui.fmt_count(r, "off_track"))
    col.caption(f"of {ui.fmt_count(r, 'assessable')} open episodes with two scores or more "
                f"({ui.fmt_count(r, 'open_episodes')} open); rate "
                f"{ui.fmt_rate(r, 'off_track_rate')}")
per_ther = rates.filter(pl.col("therapist_id").is_not_null()
                        & (pl.col("clinic_id") == clinic if clinic else pl.lit(True)))
if per_ther.height:
    rows = [{"clinic": r["clinic_id"], "therapist": r["therapist_id"],
             "measure": r["instrument"], "open episodes": ui.fmt_count(r, "open_episodes"),
             "with two scores or more": ui.fmt_count(r, "assessable"),
             "off track": ui.fmt_count(r, "off_track"),
             "share off track (95% CI)": ui.fmt_rate(r, "off_track_rate")}
            for r in per_ther.sort("clinic_id", "therapist_id", "instrument")
            .iter_rows(named=True)]
    st.subheader("By therapist")
    st.dataframe(pl.DataFrame(rows), hide_index=True)

st.subheader("Episodes waiting for review")
if not user.row_level:
    st.info("The list of episodes is for the quality team; directors see the counts above.")
    st.stop()
cond, params = ui.clinic_sql(user)
if clinic:
    cond, params = "clinic_id = ?", (clinic,)
episodes = query(snapshot, f"""
    SELECT clinic_id, therapist_id, episode_id, client_key, instrument, first_date, last_date,
           sessions, intake, round(improvement, 1) AS improvement,
           round(expected_improvement, 1) AS expected_improvement, below_expected,
           reliably_deteriorated
    FROM off_track_episode WHERE off_track AND {cond}
    ORDER BY clinic_id, therapist_id, last_date""", params)  # noqa: S608 - cond is ours
auth.audit(settings, user, "view", what="off_track_episode", clinic=clinic, rows=episodes.height)
st.dataframe(episodes, hide_index=True)
ui.download(episodes, "Download the list (CSV)", "off_track_episodes.csv", user, settings,
            "off_track_episode", key="dl_off_track")
