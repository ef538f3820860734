"""Lineage (quality teams): from a figure on a director's page (an outcome cell: measure,
clinic, month) to the episodes behind it, their sessions, and the batches (files) they came
from. Accepts ``?instrument=&clinic=&month=YYYY-MM`` in the URL."""

from __future__ import annotations

import datetime as dt

import polars as pl
import streamlit as st

from dashboards import auth, ui
from dashboards.queries import query, table

settings, user, snapshot = ui.page_context(roles=("quality", "admin"))
st.title("Lineage")
ui.snapshot_caption(snapshot)
outcomes = ui.scope(table(snapshot, "dir_outcomes"), user)
needed = {"episode_measure", "episode_session", "audit_batch"}
if outcomes.is_empty() or not needed <= set(snapshot.tables):
    st.info("Lineage needs dir_outcomes, episode_measure, episode_session and audit_batch.")
    st.stop()

qp = st.query_params
instruments = sorted(outcomes["instrument"].unique().to_list())
clinics = sorted(outcomes["clinic_id"].drop_nulls().unique().to_list())
c1, c2, c3 = st.columns(3)
inst = c1.selectbox("Measure", instruments, key="lin_inst",
                    index=instruments.index(qp["instrument"]) if qp.get("instrument")
                    in instruments else 0)
clinic = c2.selectbox("Clinic", clinics, key="lin_clinic",
                      index=clinics.index(qp["clinic"]) if qp.get("clinic") in clinics else 0)
months = sorted(outcomes.filter((pl.col("clinic_id") == clinic) & (pl.col("instrument") == inst))
                ["month"].drop_nulls().to_list())
labels = ["all months", *[f"{m:%Y-%m}" for m in months]]
month_label = c3.selectbox("Month the episode ended", labels, key="lin_month",
                           index=labels.index(qp["month"]) if qp.get("month") in labels else 0)
month = None if month_label == "all months" else dt.date.fromisoformat(month_label + "-01")

figure = ui.first_row(outcomes, clinic_id=clinic, month=month, instrument=inst)
st.subheader("The figure")
if figure is None:
    st.caption("No such cell in dir_outcomes.")
    st.stop()
recovered, improved = ui.fmt_rate(figure, "recovered_rate"), ui.fmt_rate(figure, "improved_rate")
st.markdown(f"**{inst}, {clinic}, {month_label}**: finished episodes "
            f"**{ui.fmt_count(figure, 'n')}**, recovered **{recovered}**, "
            f"reliably improved **{improved}**")

where = "instrument = ? AND clinic_id = ? AND finished AND change IS NOT NULL"
args: list = [inst, clinic]
if month is not None:
    where += " AND month = ?"
    args.append(month)
episodes = query(snapshot, f"""
    SELECT episode_id, client_key, therapist_id, first_date, last_date, sessions, first_score,
           last_score, change, category, early_alliance, exposure
    FROM episode_measure WHERE {where} ORDER BY episode_id""", tuple(args))  # noqa: S608 - clauses are fixed text with ? placeholders
auth.audit(settings, user, "view", what="lineage", instrument=inst, clinic=clinic,
           month=month_label, episodes=episodes.height)
st.subheader(f"Episodes behind it ({episodes.height:,})")
if figure.get("n") is not None:
    same = episodes.height == int(figure["n"])
    st.caption(("✓ matches" if same else "✗ differs from") + " the figure's n.")
st.dataframe(episodes.head(5_000), hide_index=True)
if episodes.height > 5_000:
    st.caption("The first 5,000 episodes are listed; the download has all of them.")

SHOWN = 5_000  # rows drawn in the browser; the counts and downloads cover all of them
count_sql = f"""
    SELECT count(*) AS n FROM episode_session
    WHERE episode_id IN (SELECT episode_id FROM episode_measure WHERE {where})"""  # noqa: S608 - clauses are fixed text with ? placeholders
n_sessions = query(snapshot, count_sql, tuple(args))["n"][0]
sessions_sql = f"""
    SELECT s.episode_id, s.session_date, s.session_number, s.therapist_id, s.session_index,
           s.batch_ids
    FROM episode_session s JOIN (SELECT episode_id FROM episode_measure WHERE {where}) e
      USING (episode_id) ORDER BY s.episode_id, s.session_index LIMIT {SHOWN}"""  # noqa: S608 - clauses are fixed text with ? placeholders
sessions = query(snapshot, sessions_sql, tuple(args))
st.subheader(f"Their sessions ({n_sessions:,})")
if n_sessions > SHOWN:
    st.caption(f"The first {SHOWN:,} sessions are listed; pick a month for a smaller figure.")
st.dataframe(sessions, hide_index=True)

batches = query(snapshot, f"""
    WITH ids AS (
        SELECT DISTINCT unnest(s.batch_ids) AS batch_id
        FROM episode_session s JOIN (SELECT episode_id FROM episode_measure WHERE {where}) e
          USING (episode_id))
    SELECT b.batch_id, b.source_name, b.content_sha256, b.received_at, b.status,
           b.rows_loaded, b.rows_quarantined
    FROM audit_batch b JOIN ids USING (batch_id) ORDER BY b.batch_id""", tuple(args))  # noqa: S608 - clauses are fixed text with ? placeholders
st.subheader(f"The files they came from ({batches.height:,} batches)")
st.dataframe(batches, hide_index=True)
ui.download(episodes, "Download the episodes (CSV)", "lineage_episodes.csv", user, settings,
            "lineage_episodes", key="dl_lineage")
