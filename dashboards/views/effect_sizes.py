"""Effect sizes: pre-post and severity-adjusted d per clinic, therapist and month, with their
95% intervals, beside the published routine-practice benchmark of the measure (read from the
``outcome_definitions`` mart, e.g. Gaskell et al. 2023). Suppressed cells say so."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import table

settings, user, snapshot = ui.page_context()
st.title("Effect sizes")
ui.snapshot_caption(snapshot)
st.caption("Pre–post d = mean improvement / SD of the intake scores (signed so + = better), "
           "95% interval after Becker (1988). Severity-adjusted d: improvement regressed on "
           "intake over all clinics, so a group with sicker clients is not punished; interval "
           "from the t interval of the group's mean residual. Finished episodes with a pair of "
           "scores (month = month of the episode's last session).")

sizes = ui.scope(table(snapshot, "dir_effect_size"), user)
definitions = table(snapshot, "outcome_definitions")
if sizes.is_empty():
    st.info("No effect sizes published for your clinics yet.")
    st.stop()
clinic = ui.clinic_picker(user, sizes["clinic_id"].drop_nulls().to_list(), key="es_clinic")
inst = st.selectbox("Outcome measure", sorted(sizes["instrument"].unique().to_list()),
                    key="es_instrument")
label = clinic or "all clinics"
mine = sizes.filter(pl.col("instrument") == inst)
bench = ui.first_row(definitions, instrument=inst) if definitions.height else None
benchmark = ui.scalar(bench.get("benchmark_d")) if bench else None


def _fmt_d(row: dict, col: str) -> str:
    return ui.fmt_mean(row, col, digits=2)


def _with_benchmark(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    if benchmark is None:
        return chart
    rule = alt.Chart().mark_rule(color="#d62728", strokeDash=[6, 3]).encode(
        x=alt.datum(benchmark))
    return alt.layer(chart, rule)


# Headline --------------------------------------------------------------------------------
st.subheader(f"{inst}, {label}")
unit = "all" if clinic is None else "clinic"
head = ui.first_row(mine, unit=unit, clinic_id=clinic, therapist_id=None, month=None)
cols = st.columns(3)


def _headline(container, title: str, col: str) -> None:
    """The value as the metric, its 95% interval and n underneath."""
    if head is None or ui.is_suppressed(head):
        container.metric(title, "–" if head is None else ui.SUPPRESSED)
        return
    value = ui.scalar(head.get(col))
    container.metric(title, "–" if value is None else f"{value:.2f}")
    lo, hi = ui.scalar(head.get(f"{col}_ci_low")), ui.scalar(head.get(f"{col}_ci_high"))
    if lo is not None and hi is not None:
        container.caption(f"95% CI {lo:.2f} to {hi:.2f}; n = {ui.fmt_count(head, 'n')} "
                          "episodes")


_headline(cols[0], "Pre–post d", "d")
_headline(cols[1], "Severity-adjusted d", "adjusted_d")
if benchmark is not None and bench is not None:
    cols[2].metric("Benchmark d", f"{benchmark:.2f}")
    cols[2].caption(f"{bench['benchmark_label']}: {bench['benchmark_source']}")
else:
    cols[2].metric("Benchmark d", "–")
    cols[2].caption("No published benchmark for this measure in its definition.")
if head is not None and ui.is_suppressed(head):
    st.caption("This cell is suppressed (too few clients, or hidden so that a small cell "
               "cannot be worked out from the others).")

# By clinic (all-clinic users) or by therapist ------------------------------------------------
def _forest(frame: pl.DataFrame, y: str, what: str) -> None:
    rows = [{what: r[y] if r[y] is not None else "all", "episodes (n)": ui.fmt_count(r, "n"),
             "pre–post d (95% CI)": _fmt_d(r, "d"),
             "severity-adjusted d (95% CI)": _fmt_d(r, "adjusted_d")}
            for r in frame.sort(y, nulls_last=False).iter_rows(named=True)]
    st.dataframe(pl.DataFrame(rows), hide_index=True)
    shown = frame.filter(~pl.col("suppressed") & pl.col("adjusted_d").is_not_null())
    if shown.height:
        chart = ui.forest(shown.sort(y), y, "adjusted_d", "adjusted_d_ci_low",
                          "adjusted_d_ci_high", f"severity-adjusted d, {inst} (95% CI)",
                          zero=False)
        ui.show(_with_benchmark(chart).properties(title=alt.TitleParams(
            f"Severity-adjusted d by {what}, {label}",
            subtitle=(f"dashed: benchmark d = {benchmark:.2f}" if benchmark is not None
                      else "no published benchmark"), anchor="start")), width="stretch")
    ui.suppressed_note(frame, f"{what} cells")


if clinic is None:
    st.subheader("By clinic")
    _forest(mine.filter(pl.col("unit") == "clinic"), "clinic_id", "clinic")
st.subheader("By therapist (within their clinic)")
ther = mine.filter((pl.col("unit") == "therapist")
                   & (pl.col("clinic_id") == clinic if clinic else pl.lit(True)))
if ther.is_empty():
    st.caption("No therapist cells for this selection.")
else:
    _forest(ther.with_columns((pl.col("clinic_id") + " / " + pl.col("therapist_id"))
                              .alias("therapist")), "therapist", "therapist")
    st.caption("Observational and not case-mix adjusted beyond intake severity; compare with "
               "the funnel on the Therapists page, which shrinks small caseloads.")

# By month ----------------------------------------------------------------------------------
st.subheader("By month (month the episode ended)")
months = mine.filter((pl.col("unit") == "month")
                     & (pl.col("clinic_id").is_null() if clinic is None
                        else pl.col("clinic_id") == clinic))
if months.is_empty():
    st.caption("No monthly cells for this selection.")
else:
    shown = months.filter(~pl.col("suppressed") & pl.col("adjusted_d").is_not_null()).sort(
        "month")
    if shown.height:
        df = shown.select(pl.col("month").dt.strftime("%Y-%m").alias("month"), "adjusted_d",
                          "adjusted_d_ci_low", "adjusted_d_ci_high",
                          pl.col("n").cast(pl.Int64)).to_pandas()
        base = alt.Chart(df).encode(x=alt.X("month:O", title="month the episode ended",
                                            axis=alt.Axis(labelAngle=-45)))
        layers = [base.mark_area(opacity=0.25).encode(
                      y=alt.Y("adjusted_d_ci_low:Q", title="severity-adjusted d (95% CI)"),
                      y2="adjusted_d_ci_high:Q"),
                  base.mark_line(point=True).encode(y="adjusted_d:Q",
                                                    tooltip=["month", "adjusted_d", "n"])]
        if benchmark is not None:
            layers.append(alt.Chart().mark_rule(color="#d62728", strokeDash=[6, 3]).encode(
                y=alt.datum(benchmark)))
        ui.show(alt.layer(*layers).properties(height=260, title=alt.TitleParams(
            f"Severity-adjusted d by month, {inst}, {label}",
            subtitle=f"n = {int(shown['n'].sum()):,} episodes in the months shown",
            anchor="start")), width="stretch")
    ui.suppressed_note(months, "months")
    with st.expander("Monthly figures"):
        st.dataframe(pl.DataFrame([
            {"month": f"{r['month']:%Y-%m}", "episodes (n)": ui.fmt_count(r, "n"),
             "pre–post d (95% CI)": _fmt_d(r, "d"),
             "severity-adjusted d (95% CI)": _fmt_d(r, "adjusted_d")}
            for r in months.sort("month").iter_rows(named=True)]), hide_index=True)
ui.definition_caption(definitions, inst)
