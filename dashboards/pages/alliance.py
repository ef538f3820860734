"""Alliance: SRS and WAI-SR distributions, the share of sessions below the SRS cutoff, and
early alliance against outcome (binned scatter, fitted line, correlation with its interval)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.data import query, table
from transforms.stats import wilson_exprs

SRS_CUTOFF = 36  # DOMAIN.md: SRS total < 36 flags a possible alliance problem (Duncan et al. 2003)

settings, user, snapshot = ui.page_context()
st.title("Alliance")
ui.snapshot_caption(snapshot)
min_cell = settings.min_cell_size

therapists = ui.scope(table(snapshot, "dir_therapist_alliance"), user)
subscales = ui.scope(table(snapshot, "dir_alliance_subscales"), user)
outcome = ui.scope(table(snapshot, "dir_alliance_outcome"), user)
clinic = ui.clinic_picker(user, [*therapists["clinic_id"].to_list()] if therapists.height else []
                          + ([*subscales["clinic_id"].to_list()] if subscales.height else [])
                          + ([*outcome["clinic_id"].drop_nulls().to_list()] if outcome.height
                             else []), key="alliance_clinic")
label = clinic or "all clinics"
cond, params = ui.clinic_sql(user)
if clinic is not None:
    cond, params = "clinic_id = ?", (clinic,)

# SRS -------------------------------------------------------------------------------------
st.subheader(f"Session Rating Scale (SRS, 0–40): {label}")
if "session_alliance" in snapshot.tables:
    dist = query(snapshot, f"""
        SELECT least(floor(total / 2) * 2, 38) AS bin, count(*) AS sessions,
               count(DISTINCT client_key) AS n_clients
        FROM session_alliance WHERE instrument = 'SRS' AND {cond}
        GROUP BY 1 ORDER BY 1""", params)  # noqa: S608 - cond is ours
    summary = query(snapshot, f"""
        SELECT count(*) AS sessions, count(DISTINCT client_key) AS n_clients,
               count(*) FILTER (WHERE low_alliance) AS below
        FROM session_alliance WHERE instrument = 'SRS' AND {cond}""", params)  # noqa: S608
else:
    dist = summary = pl.DataFrame()
if summary.height and summary["sessions"][0]:
    s = summary.with_columns(
        *wilson_exprs(pl.col("below"), pl.col("sessions"), "below_rate"),
        (pl.col("n_clients") < min_cell).alias("suppressed")).row(0, named=True)
    c1, c2 = st.columns(2)
    ui.rate_metric(c1, f"Sessions with SRS below {SRS_CUTOFF}", s, "below_rate", "sessions",
                   "sessions")
    ui.count_metric(c2, "Sessions with an SRS", s, "sessions",
                    f"{ui.fmt_count(s, 'n_clients')} clients")
    shown = dist.filter(pl.col("n_clients") >= min_cell)
    hidden = dist.height - shown.height
    if shown.height and not s["suppressed"]:
        df = shown.with_columns((pl.col("bin") + 2).alias("bin_end"),
                                (pl.col("bin") < SRS_CUTOFF).alias("below_cutoff")).to_pandas()
        bars = alt.Chart(df).mark_bar(stroke="white").encode(
            x=alt.X("bin:Q", title="SRS total (points, 0–40; 2-point bands)",
                    scale=alt.Scale(domain=[0, 40])),
            x2="bin_end:Q",
            y=alt.Y("sessions:Q", title="sessions (count)"), y2=alt.datum(0),
            color=alt.Color("below_cutoff:N", title=f"below {SRS_CUTOFF}",
                            scale=alt.Scale(domain=[True, False], range=["#d62728", "#4c78a8"])),
            tooltip=["bin", "bin_end", "sessions"],
        )
        rule = alt.Chart().mark_rule(strokeDash=[4, 4]).encode(x=alt.datum(SRS_CUTOFF))
        st.altair_chart((bars + rule).properties(
            height=240, title=f"SRS distribution, {label} (n = {int(s['sessions']):,} sessions)"),
            width="stretch")
    if hidden:
        st.caption(f"{hidden} score bands with fewer than {min_cell} clients suppressed.")
else:
    st.caption("No SRS published for this selection.")

here = therapists.filter(pl.col("clinic_id") == clinic) if clinic else therapists
if here.height:
    rows = [{"clinic": r["clinic_id"], "therapist": r["therapist_id"],
             "sessions": ui.fmt_count(r, "n_sessions"), "clients": ui.fmt_count(r, "n_clients"),
             "mean SRS (95% CI)": ui.fmt_mean(r, "mean_total"),
             f"sessions below {SRS_CUTOFF} (95% CI)": ui.fmt_rate(r, "low_alliance_rate"),
             "sessions with a drop (95% CI)": ui.fmt_rate(r, "drop_rate")}
            for r in here.sort("clinic_id", "therapist_id").iter_rows(named=True)]
    with st.expander("SRS by therapist", expanded=False):
        st.dataframe(pl.DataFrame(rows), hide_index=True)

# WAI-SR ----------------------------------------------------------------------------------
st.subheader(f"Working Alliance Inventory (WAI-SR) subscales, 4–20: {label}")
wai = subscales.filter(pl.col("therapist_id").is_null()
                       & (pl.col("clinic_id") == clinic if clinic else pl.lit(True)))
if wai.is_empty():
    st.caption("No WAI-SR published for this selection.")
else:
    rows = [{"clinic": r["clinic_id"], "subscale": r["measure"],
             "administrations": ui.fmt_count(r, "n"), "clients": ui.fmt_count(r, "n_clients"),
             "mean (95% CI)": ui.fmt_mean(r, "mean")} for r in wai.iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
    per_ther = subscales.filter(pl.col("therapist_id").is_not_null() & ~pl.col("suppressed")
                                & (pl.col("clinic_id") == clinic if clinic else pl.lit(True)))
    if per_ther.height:
        df = per_ther.to_pandas()
        st.altair_chart(alt.Chart(df).mark_boxplot(extent="min-max").encode(
            x=alt.X("measure:N", title="subscale"),
            y=alt.Y("mean:Q", title="therapist mean (points, 4–20)",
                    scale=alt.Scale(domain=[4, 20])),
        ).properties(height=240, title=f"Spread of therapist means, {label} "
                     f"(n = {per_ther['therapist_id'].n_unique()} therapists)"), width="stretch")
    ui.suppressed_note(subscales)

# Early alliance and outcome --------------------------------------------------------------
st.subheader("Early alliance and outcome")
st.caption("Observational: clients with a better early alliance may differ in other ways.")
corr = outcome.filter((pl.col("scope") == "all") if clinic is None
                      else (pl.col("clinic_id") == clinic))
if corr.is_empty():
    st.caption("No early alliance–outcome figures published for this selection.")
    st.stop()


def _r(row: dict) -> str:
    """r signed so + = better alliance with better outcome, with its Fisher-z interval."""
    if row["suppressed"] or row["r_improvement"] is None:
        return ui.SUPPRESSED if row["suppressed"] else "–"
    flip = row["r_improvement"] != row["estimate"]
    lo, hi = (-row["ci_high"], -row["ci_low"]) if flip else (row["ci_low"], row["ci_high"])
    return f"{row['r_improvement']:+.2f} (95% CI {lo:+.2f} to {hi:+.2f})"


rows = [{"outcome": r["instrument"], "alliance": r["alliance_instrument"],
         "episodes (n)": ui.fmt_count(r, "n"),
         "r, better alliance ↔ better outcome (95% CI)": _r(r)}
        for r in corr.iter_rows(named=True)]
st.dataframe(pl.DataFrame(rows), hide_index=True)
inst = st.selectbox("Outcome measure", sorted(corr["instrument"].to_list()), key="alliance_inst")
row = ui.first_row(corr, instrument=inst)
if row is None or row["suppressed"]:
    st.caption("suppressed")
    st.stop()
points = query(snapshot, f"""
    WITH e AS (
        SELECT early_alliance AS x, improvement AS y, client_key
        FROM episode_measure
        WHERE instrument = ? AND finished AND early_alliance IS NOT NULL
          AND improvement IS NOT NULL AND {cond})
    SELECT round(x) AS x_bin, avg(x) AS early_alliance, avg(y) AS improvement,
           count(*) AS episodes, count(DISTINCT client_key) AS n_clients,
           (SELECT regr_slope(y, x) FROM e) AS slope,
           (SELECT regr_intercept(y, x) FROM e) AS intercept
    FROM e GROUP BY 1 ORDER BY 1""", (inst, *params))  # noqa: S608 - cond is ours
kept = points.filter(pl.col("n_clients") >= min_cell) if points.height else points
if kept.height:
    slope, intercept = points["slope"][0], points["intercept"][0]
    xs = [float(kept["early_alliance"].min()), float(kept["early_alliance"].max())]
    line = pl.DataFrame({"early_alliance": xs,
                         "improvement": [intercept + slope * x for x in xs]}).to_pandas()
    a_inst = row["alliance_instrument"]
    dots = alt.Chart(kept.to_pandas()).mark_circle(opacity=0.7).encode(
        x=alt.X("early_alliance:Q", title=f"early {a_inst} (mean of first sessions, points)",
                scale=alt.Scale(zero=False)),
        y=alt.Y("improvement:Q", title=f"{inst} improvement (points, + = better)"),
        size=alt.Size("episodes:Q", title="episodes"),
        tooltip=["early_alliance", "improvement", "episodes"])
    fit = alt.Chart(line).mark_line(color="#d62728").encode(x="early_alliance:Q",
                                                            y="improvement:Q")
    r_txt = _r(row)
    st.altair_chart((dots + fit).properties(
        height=320, title=f"{inst} improvement by early {a_inst}, {label}: r = {r_txt} "
        f"(n = {int(row['n']):,} episodes); each dot = mean of ≥ {min_cell} clients"),
        width="stretch")
    st.caption(f"Fitted least-squares line over all episodes: {slope:+.2f} points of {inst} "
               f"per point of early {a_inst}. {points.height - kept.height} alliance bands with "
               f"fewer than {min_cell} clients are suppressed. Correlation: {row['method']}.")
