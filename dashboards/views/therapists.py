"""Therapists: a funnel plot of intake-adjusted outcome against caseload, never a ranked table.

Each dot is a therapist's mean intake-adjusted improvement (residual points, 0 = what the
clinic average would predict for the same intake); the funnel is 0 ± 1.96 and ± 3 standard
errors at each caseload, so dots inside are indistinguishable from average.
"""

from __future__ import annotations

import statistics

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import table

Z95 = statistics.NormalDist().inv_cdf(0.975)  # the funnel's 95% limits: 1.959963...

settings, user, snapshot = ui.page_context()
st.title("Therapists")
ui.snapshot_caption(snapshot)
st.caption("About 5% of outcome variance lies between therapists (Johns et al. 2019): most "
           "therapists are indistinguishable from average, so this page shows a funnel, not a "
           "league table. Each therapist is compared with the average of their own clinic "
           "(therapist ids are local to a clinic; the model has a clinic term).")

effects = ui.scope(table(snapshot, "dir_therapist_effect"), user)
if effects.is_empty():
    st.info("No therapist figures published for your clinics.")
    st.stop()
clinic = ui.clinic_picker(user, effects["clinic_id"].drop_nulls().to_list(), key="ther_clinic")
inst = st.selectbox("Outcome measure", sorted(effects["instrument"].unique().to_list()),
                    key="ther_instrument")
part = effects.filter((pl.col("instrument") == inst)
                      & (pl.col("clinic_id") == clinic if clinic else pl.lit(True)))
shown = part.filter(~pl.col("suppressed"))
label = clinic or "all clinics"


def within_sd(frame: pl.DataFrame) -> float | None:
    """The within-therapist SD of adjusted improvement (the mart's ``sigma``, one value per
    instrument; suppressed rows carry null)."""
    if "sigma" not in frame.columns:
        return None
    return ui.scalar(frame["sigma"].drop_nulls().median())


if shown.is_empty():
    st.caption("Every therapist cell is suppressed for this selection.")
else:
    sigma = within_sd(effects.filter(pl.col("instrument") == inst))
    df = shown.select("clinic_id", "therapist_id", "n", "raw_adjusted_mean", "shrunk_estimate",
                      "ci_low", "ci_high", "differs_from_average").to_pandas()
    dots = alt.Chart(df).mark_circle(size=90, opacity=0.85).encode(
        x=alt.X("n:Q", title="caseload (finished episodes with a change, n)"),
        y=alt.Y("raw_adjusted_mean:Q",
                title=f"{inst} adjusted improvement vs average (points)"),
        color=alt.Color("differs_from_average:N", title="shrunken 95% CI",
                        scale=alt.Scale(domain=["above", "not distinguishable", "below"],
                                        range=["#2ca02c", "#7f7f7f", "#d62728"])),
        tooltip=["clinic_id", "therapist_id", "n",
                 alt.Tooltip("raw_adjusted_mean:Q", format="+.2f"),
                 alt.Tooltip("shrunk_estimate:Q", format="+.2f"), "differs_from_average"])
    layers = [dots, alt.Chart().mark_rule(color="gray").encode(y=alt.datum(0))]
    if sigma:
        n_max = max(int(shown["n"].max()), 10)
        grid = [max(2, int(n_max * i / 60)) for i in range(1, 61)]
        se = sigma / pl.col("n").cast(pl.Float64).sqrt()
        funnel = pl.DataFrame({"n": grid}).with_columns(
            (Z95 * se).alias("hi95"), (-Z95 * se).alias("lo95"),
            (3.0 * se).alias("hi998"), (-3.0 * se).alias("lo998"))
        fdf = funnel.to_pandas()
        for col, dash in (("hi95", [4, 4]), ("lo95", [4, 4]), ("hi998", [1, 3]),
                          ("lo998", [1, 3])):
            layers.append(alt.Chart(fdf).mark_line(color="#555", strokeDash=dash).encode(
                x="n:Q", y=f"{col}:Q"))
    ui.show(alt.layer(*layers).properties(
        height=380, title=f"Funnel plot, {inst}, {label} ({shown.height} therapists, "
        f"n = {int(shown['n'].sum()):,} episodes)"), width="stretch")
    if sigma:
        st.caption(f"Funnel: 95% (dashed) and 99.8% (dotted) limits, 0 ± z·{sigma:.1f}/√n "
                   "points. Colour: whether the shrunken (empirical Bayes) 95% interval "
                   "excludes the average.")
    else:
        st.caption("Funnel limits unavailable: the mart gives no within-therapist SD here.")
n_hidden = part.height - shown.height
if n_hidden:
    st.caption(f"{n_hidden} therapists with fewer than the minimum number of clients are "
               "suppressed (not shown).")
st.caption(f"Method: {part['method'][0] if part.height else ''}.")
with st.expander("Therapists in alphabetical order (not a ranking)"):
    rows = [{"clinic": r["clinic_id"], "therapist": r["therapist_id"],
             "episodes (n)": ui.fmt_count(r, "n"),
             "shrunken estimate, points (95% CI)":
                 ui.fmt_mean(r, "shrunk_estimate", "ci_low", "ci_high", digits=2, signed=True),
             "compared with average": ui.SUPPRESSED if r["suppressed"]
             else r["differs_from_average"]}
            for r in part.sort("clinic_id", "therapist_id").iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
