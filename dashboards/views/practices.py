"""Collaborative practices and outcomes: how often each practice is used, the intake-adjusted
outcome difference per practice and by exposure level, with n and intervals; observational."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import table

settings, user, snapshot = ui.page_context()
st.title("Collaborative practices and outcomes")
ui.snapshot_caption(snapshot)
st.warning(ui.OBSERVATIONAL, icon=":material/info:")

use_all = ui.scope(table(snapshot, "dir_practice_use"), user)
effect = ui.scope(table(snapshot, "dir_practice_effect"), user)
by_level = ui.scope(table(snapshot, "dir_practice_outcome"), user)
definitions = table(snapshot, "outcome_definitions")
if use_all.is_empty() and effect.is_empty():
    st.info("No practice checklist or CollaboRATE data published for your clinics.")
    st.stop()

use = use_all.filter(pl.col("therapist_id").is_null() & pl.col("month").is_null()) \
    if use_all.height else use_all
clinics = [*use["clinic_id"].drop_nulls().to_list(), *effect["clinic_id"].drop_nulls().to_list()]
clinic = ui.clinic_picker(user, clinics, key="practice_clinic")
label = clinic or "all clinics"


def _pretty(name: str) -> str:
    return {"all": "All practices (mean exposure)",
            "top_score": "CollaboRATE top score"}.get(name, name.replace("_", " ").capitalize())


# Use -------------------------------------------------------------------------------------
st.subheader(f"How often each practice is used: {label}")
here = use.filter(
    pl.col("clinic_id").is_null() if clinic is None else pl.col("clinic_id") == clinic)
if here.is_empty():
    st.caption("No practice use published for this selection.")
else:
    rows = [{"practice": _pretty(r["practice"]), "episodes (n)": ui.fmt_count(r, "n"),
             "mean share of sessions (95% CI)": ui.fmt_rate(r, "mean_share")}
            for r in here.iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
    shown = here.filter(~pl.col("suppressed")).with_columns(
        pl.col("practice").map_elements(_pretty, return_dtype=pl.String),
        *(pl.col(c) * 100 for c in ("mean_share", "mean_share_ci_low", "mean_share_ci_high")))
    if shown.height:
        n = int(shown.filter(pl.col("practice") == _pretty("all"))["n"].sum() or shown["n"].max())
        ui.show(ui.forest(shown, "practice", "mean_share", "mean_share_ci_low",
                                  "mean_share_ci_high", "% of sessions (episode mean, 95% CI)",
                                  zero=False).properties(
            title=f"Practice use, {label} (n = {n:,} episodes)"), width="stretch")
    ui.suppressed_note(here)
    st.caption("CollaboRATE top score: the share of an episode's CollaboRATE administrations "
               "with all three items at 9 (Elwyn et al. 2013; Barr et al. 2014).")

# Adjusted effect per practice ------------------------------------------------------------
st.subheader(f"Outcome difference by practice, adjusted for intake severity: {label}")
scope_rows = effect.filter(
    (pl.col("scope") == "all") if clinic is None
    else ((pl.col("scope") == "clinic") & (pl.col("clinic_id") == clinic)))
instruments = sorted(scope_rows["instrument"].unique().to_list()) if scope_rows.height else []
if not instruments:
    st.caption("No practice–outcome estimates published for this selection.")
else:
    inst = st.selectbox("Outcome measure", instruments, key="practice_instrument")
    part = scope_rows.filter(pl.col("instrument") == inst)
    rows = [{"practice": _pretty(r["practice"]), "episodes (n)": ui.fmt_count(r, "n"),
             "therapists": ui.fmt_count(r, "n_therapists"),
             "points of change per 0→100% exposure (95% CI)":
                 ui.fmt_mean(r, "estimate", "ci_low", "ci_high", signed=True)}
            for r in part.iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
    shown = part.filter(~pl.col("suppressed")).with_columns(
        pl.col("practice").map_elements(_pretty, return_dtype=pl.String))
    if shown.height:
        ui.show(ui.forest(shown, "practice", "estimate", "ci_low", "ci_high",
                                  f"{inst} change in points, sessions with vs without (95% CI)")
                        .properties(title=f"Observational, intake-adjusted: {inst}, {label} "
                                    f"(n = {int(shown['n'].max()):,} episodes)"),
                        width="stretch")
    ui.suppressed_note(part)
    st.caption(f"Model: {part['method'][0]}. Positive = more improvement on {inst} where the "
               "practice was used in more of the sessions. Intervals clustered by therapist "
               "within clinic; pooled estimates are within clinics (a clinic term).")

# By exposure level -----------------------------------------------------------------------
st.subheader("Outcomes by exposure level (low < 1/3 ≤ medium < 2/3 ≤ high of sessions)")
lv_here = by_level.filter(pl.col("clinic_id").is_null() if clinic is None
                          else pl.col("clinic_id") == clinic) if by_level.height else by_level
if lv_here.is_empty():
    st.caption("No exposure-level figures published for this selection.")
else:
    practices = lv_here["practice"].unique(maintain_order=True).to_list()
    chosen = st.selectbox("Practice", practices, format_func=_pretty, key="practice_level")
    lv = lv_here.filter(pl.col("practice") == chosen).sort(
        "instrument", pl.col("level").replace_strict({"low": 0, "medium": 1, "high": 2}))
    rows = [{"measure": r["instrument"], "exposure level": r["level"],
             "episodes (n)": ui.fmt_count(r, "n"),
             "mean exposure": "suppressed" if r["suppressed"]
             else f"{100 * (r['mean_exposure'] or 0):.0f}%",
             "adjusted mean improvement, points (95% CI)":
                 ui.fmt_mean(r, "adjusted_mean_improvement", "ci_low", "ci_high", signed=True),
             "reliable improvement (95% CI)": ui.fmt_rate(r, "reliable_improvement_rate")}
            for r in lv.iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
    shown = lv.filter(~pl.col("suppressed") & pl.col("ci_low").is_not_null())
    if shown.height:
        df = shown.to_pandas()
        base = alt.Chart(df).encode(
            x=alt.X("level:N", sort=["low", "medium", "high"], title="exposure level",
                    axis=alt.Axis(labelAngle=0)),
            color=alt.Color("instrument:N", title="measure"),
            xOffset="instrument:N")
        ui.show(alt.layer(
            base.mark_rule(strokeWidth=2).encode(
                y=alt.Y("ci_low:Q", title="adjusted mean improvement (points, 95% CI)"),
                y2="ci_high:Q"),
            base.mark_point(filled=True, size=80).encode(
                y="adjusted_mean_improvement:Q", tooltip=["instrument", "level", "n",
                                                          "adjusted_mean_improvement"]),
        ).properties(height=280, title=alt.TitleParams(
            f"{_pretty(chosen)}: observational, {label}",
            subtitle=f"n = {int(shown['n'].sum()):,} episodes; + = more improvement",
            anchor="start")), width="stretch")
    ui.suppressed_note(lv)
    st.caption(f"Adjustment: {lv['adjustment'][0]}. Reliable improvement: Wilson 95% CI.")
    for code in lv["instrument"].unique().sort().to_list():
        ui.definition_caption(definitions, code)

# Where practice is weakest ---------------------------------------------------------------
st.subheader("Where practice is weakest")
per_clinic = use.filter(pl.col("clinic_id").is_not_null() & ~pl.col("suppressed")
                        & ~pl.col("practice").is_in(["all", "top_score"])) \
    if use.height else use
if per_clinic.height:
    weakest = per_clinic.sort("mean_share").group_by("clinic_id", maintain_order=True).first()
    rows = [{"clinic": r["clinic_id"], "least used practice": _pretty(r["practice"]),
             "mean share of sessions (95% CI)": ui.fmt_rate(r, "mean_share"),
             "episodes (n)": ui.fmt_count(r, "n")} for r in weakest.sort("clinic_id")
            .iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)


def _heat(frame: pl.DataFrame, x: str, x_title: str, title: str) -> None:
    """Practice (rows) by ``x`` (columns): % of sessions, suppressed cells left blank."""
    shown = frame.filter(~pl.col("suppressed") & ~pl.col("practice").is_in(["all"]))
    if shown.is_empty():
        return
    heat = shown.with_columns(
        pl.col("practice").map_elements(_pretty, return_dtype=pl.String),
        (pl.col("mean_share") * 100).alias("share"), pl.col(x).cast(pl.String))
    ui.show(alt.Chart(heat.to_pandas()).mark_rect().encode(
        x=alt.X(f"{x}:O", title=x_title, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("practice:N", title=None, axis=alt.Axis(labelLimit=260)),
        color=alt.Color("share:Q", title="% of sessions", scale=alt.Scale(scheme="blues")),
        tooltip=[x, "practice", alt.Tooltip("share:Q", format=".1f"), "n"],
    ).properties(height=240, title=alt.TitleParams(title, anchor="start")), width="stretch")
    ui.suppressed_note(frame)


if per_clinic.height and clinic is None:
    _heat(use.filter(pl.col("clinic_id").is_not_null()), "clinic_id", "clinic",
          "Practice use by clinic (% of sessions, episode mean)")
if clinic is not None and use_all.height:
    by_ther = use_all.filter((pl.col("clinic_id") == clinic) & pl.col("therapist_id").is_not_null())
    _heat(by_ther, "therapist_id", "therapist (main therapist of the episode)",
          f"Practice use by therapist, {clinic} (% of sessions, episode mean)")
    by_month = use_all.filter((pl.col("clinic_id") == clinic) & pl.col("month").is_not_null()
                              ).with_columns(pl.col("month").dt.strftime("%Y-%m"))
    _heat(by_month, "month", "month the episode ended",
          f"Practice use by month, {clinic} (% of sessions, episode mean)")
