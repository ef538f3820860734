"""Alliance: SRS and WAI-SR distributions, the share of sessions below the SRS cutoff, and
early alliance against outcome (binned scatter, fitted line, correlation with its interval)."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import table

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

dist_all = ui.scope(table(snapshot, "dir_alliance_distribution"), user)
dist_here = dist_all.filter(pl.col("clinic_id").is_null() if clinic is None
                            else pl.col("clinic_id") == clinic) if dist_all.height else dist_all


def _bands(frame: pl.DataFrame, unit: str, title: str, lo: float, hi: float,
           cutoff: float | None = None) -> None:
    """A histogram of a ``band`` rows frame; suppressed bands are left out and counted."""
    shown = frame.filter(~pl.col("suppressed"))
    if shown.height:
        df = shown.with_columns(pl.col("n").cast(pl.Int64), (pl.col("share") * 100)
                                .alias("pct")).to_pandas()
        enc = {}
        if cutoff is not None:
            low, ok = f"below {cutoff:g} (possible alliance problem)", f"{cutoff:g} or above"
            df["band"] = [low if b < cutoff else ok for b in df["band_low"]]
            enc["color"] = alt.Color("band:N", title="SRS total",
                                     scale=alt.Scale(domain=[low, ok],
                                                     range=["#d62728", "#4c78a8"]),
                                     legend=alt.Legend(orient="top", labelLimit=320))
        bars = alt.Chart(df).mark_bar(stroke="white").encode(
            x=alt.X("band_low:Q", title=f"{title} (points)", scale=alt.Scale(domain=[lo, hi])),
            x2="band_high:Q", y=alt.Y("n:Q", title=f"{unit} (count)"), y2=alt.datum(0),
            tooltip=["band_low", "band_high", "n", alt.Tooltip("pct:Q", format=".1f")], **enc)
        layers = [bars]
        if cutoff is not None:
            layers.append(alt.Chart().mark_rule(strokeDash=[4, 4]).encode(x=alt.datum(cutoff)))
        ui.show(alt.layer(*layers).properties(height=240, title=alt.TitleParams(
            f"{title}, {label}", subtitle=f"n = {int(shown['n'].sum()):,} {unit} in the bands "
            "shown", anchor="start")), width="stretch")
    ui.suppressed_note(frame, "score bands")


# SRS -------------------------------------------------------------------------------------
st.subheader(f"Session Rating Scale (SRS, 0–40): {label}")
srs_rows = dist_here.filter(pl.col("instrument") == "SRS") if dist_here.height else dist_here
summary = ui.first_row(srs_rows, metric="below_cutoff") if srs_rows.height else None
if summary is not None:
    cut = summary["cutoff"] or SRS_CUTOFF
    c1, c2 = st.columns(2)
    ui.rate_metric(c1, f"Sessions with SRS below {cut:g}", summary, "below_rate", "n",
                   "sessions")
    ui.count_metric(c2, "Sessions with an SRS", summary, "n",
                    f"{ui.fmt_count(summary, 'n_clients')} clients")
    _bands(srs_rows.filter(pl.col("metric") == "band"), "sessions",
           "SRS total per session (2-point bands)", 0, 40, cut)
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
        ui.show(alt.Chart(df).mark_boxplot(extent="min-max").encode(
            x=alt.X("measure:N", title="subscale"),
            y=alt.Y("mean:Q", title="therapist mean (points, 4–20)",
                    scale=alt.Scale(domain=[4, 20])),
        ).properties(height=240, title=f"Spread of therapist means, {label} "
                     f"(n = {per_ther['therapist_id'].n_unique()} therapists)"), width="stretch")
    ui.suppressed_note(subscales)
wai_total = dist_here.filter((pl.col("instrument") == "WAISR") & (pl.col("metric") == "band")) \
    if dist_here.height else dist_here
if wai_total.height:
    _bands(wai_total, "episodes", "WAI-SR total at the first administration (12–60, 4-point "
           "bands)", 12, 60)

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
bins = ui.scope(table(snapshot, "dir_alliance_outcome_bins"), user)
kept = bins.filter((pl.col("instrument") == inst) & ~pl.col("suppressed") & (
    pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic)) \
    if bins.height else bins
if kept.height:
    slope, intercept = row["slope"], row["intercept"]
    a_inst = row["alliance_instrument"]
    layers = [alt.Chart(kept.with_columns(pl.col("n").cast(pl.Int64)).to_pandas())
              .mark_circle(opacity=0.7).encode(
        x=alt.X("early_alliance:Q", title=f"early {a_inst} (mean of first sessions, points)",
                scale=alt.Scale(zero=False)),
        y=alt.Y("mean_improvement:Q", title=f"{inst} improvement (points, + = better)"),
        size=alt.Size("n:Q", title="episodes per dot", scale=alt.Scale(zero=False)),
        tooltip=["alliance_instrument", "bin_low", "bin_high", "early_alliance",
                 alt.Tooltip("mean_improvement:Q", format="+.2f"), "n"])]
    if slope is not None and intercept is not None:
        xs = [float(kept["early_alliance"].min()), float(kept["early_alliance"].max())]
        line = pl.DataFrame({"early_alliance": xs,
                             "mean_improvement": [intercept + slope * x for x in xs]})
        layers.append(alt.Chart(line.to_pandas()).mark_line(color="#d62728").encode(
            x="early_alliance:Q", y="mean_improvement:Q"))
    ui.show(alt.layer(*layers).properties(height=320, title=alt.TitleParams(
        f"{inst} improvement by early {a_inst}, {label}",
        subtitle=f"r = {_r(row)}; n = {int(row['n']):,} episodes; each dot = a band of "
        f"≥ {min_cell} clients", anchor="start")), width="stretch")
    hidden = bins.filter((pl.col("instrument") == inst) & pl.col("suppressed") & (
        pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic)).height
    line_txt = (f"Fitted least-squares line over all episodes: {slope:+.2f} points of {inst} "
                f"per point of early {a_inst}. " if slope is not None else "")
    st.caption(f"{line_txt}{hidden} alliance bands with fewer than {min_cell} clients are "
               f"suppressed. Correlation: {row['method']}.")
else:
    st.caption("Every alliance band is suppressed for this selection.")
