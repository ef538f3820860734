"""Outcome definitions: per instrument, how individual change is judged (method, parameters,
cutoff and the side a score on it belongs to, categories, effect-size benchmark, sources), read
from the published ``outcome_definitions`` mart, so every figure's definition is on record."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import ui
from dashboards.queries import table

settings, user, snapshot = ui.page_context()
st.title("Outcome definitions")
ui.snapshot_caption(snapshot)
st.caption("How each figure judges change. Methods and their boundary semantics follow the R "
           "package clinicalsignificance (v3) and the original papers: indices are reliable "
           "when |index| exceeds the critical value (strictly), changes in points or percent "
           "when they reach the threshold (inclusively). Categories: recovered (reliable "
           "improvement, clinical at the start, functional at the end), improved, unchanged, "
           "deteriorated, harmed (reliable deterioration into the clinical range).")

defs = table(snapshot, "outcome_definitions")
if defs.is_empty():
    st.info("No outcome definitions published yet.")
    st.stop()


def _value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


PARAMETERS = [
    ("method_name", "Method"), ("change_index", "Index"),
    ("improvement_threshold", "Improvement threshold"),
    ("deterioration_threshold", "Deterioration threshold"), ("boundary", "Boundary"),
    ("critical_value", "Critical value"), ("alpha", "Alpha"), ("sided", "Sided"),
    ("reliability", "Reliability"), ("reliability_post", "Reliability at the end (NK)"),
    ("sd_pre", "SD at intake"), ("sd_pre_source", "SD at intake from"),
    ("score_decimals", "Changes compared at decimals"),
    ("min_measurements", "Scores an episode needs (HLM)"),
    ("cutoff", "Clinical cutoff"), ("cutoff_kind", "Cutoff kind"),
    ("cutoff_population", "Cutoff population"),
    ("value_belongs_to", "A score on the cutoff counts as"),
    ("functional_mean", "Functional mean"), ("functional_sd", "Functional SD"),
    ("dysfunctional_source", "Dysfunctional norms from"), ("categories", "Categories"),
    ("benchmark_d", "Effect-size benchmark (d)"), ("benchmark_label", "Benchmark population"),
    ("benchmark_source", "Benchmark source"), ("reference_population", "Reference sample"),
    ("notes", "Notes"), ("sources", "Sources"),
]
# Statistics of the reference sample pool every clinic: shown to all-clinic users only, like
# every other all-clinics figure.
POOLED = [("reference_episodes", "Reference episodes"),
          ("reference_mean_pre", "Reference mean at intake"),
          ("reference_sd_pre", "Reference SD at intake"),
          ("reference_mean_post", "Reference mean at the end"),
          ("reference_sd_post", "Reference SD at the end"),
          ("reference_correlation", "Reference intake–end correlation"),
          ("dysfunctional_mean", "Dysfunctional mean"), ("dysfunctional_sd", "Dysfunctional SD"),
          ("hlm_mean_slope", "HLM average slope"), ("hlm_sd_slope", "HLM SD of slopes")]

summary = [{"measure": f"{r['name']} ({r['instrument']})", "method": r["method_name"],
            "cutoff": _value(r["cutoff"]) or "–", "categories": r["categories"]}
           for r in defs.iter_rows(named=True)]
st.dataframe(pl.DataFrame(summary), hide_index=True)

for r in defs.iter_rows(named=True):
    st.subheader(f"{r['name']} ({r['instrument']})")
    direction = "higher is better" if r["direction"] == "higher_is_better" else "higher is worse"
    st.caption(f"Direction: {direction}.")
    params = PARAMETERS + (POOLED if user.all_clinics else [])
    rows = [{"parameter": name, "value": _value(r.get(col))} for col, name in params
            if r.get(col) is not None]
    st.dataframe(pl.DataFrame(rows), hide_index=True, width="stretch")
    if r.get("reference_population") and not user.all_clinics:
        st.caption("The reference sample pools every clinic; its statistics are shown to "
                   "users who see all clinics.")
