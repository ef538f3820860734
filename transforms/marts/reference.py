"""The reference marts: ``outcome_definitions``, one row per outcome instrument (and one for the
NHS Talking Therapies paired measures) saying how change is judged: method, parameters, cutoff,
categories, effect-size benchmark and sources, with the population parameters the run computed
(reference sample statistics, the HLM fit). Built from the instrument definitions in stage 2,
so the dashboard's "Outcome definitions" page reads published data like every other page."""

from __future__ import annotations

import polars as pl

from tandem.core.contracts import Instrument
from transforms.change import JudgedChange
from transforms.clinical_significance import CATEGORIES, cutoff_values
from transforms.nhs_talking_therapies import NHS_TT, PAIRED_MEASURES
from transforms.reliable_change import critical_value

METHOD_NAMES = {
    "threshold": "Published reliable change (points)",
    "anchor": "Anchor-based: minimal important difference (points)",
    "percentage": "Percentage change from intake",
    "JT": "Jacobson & Truax (1991) reliable change index",
    "GLN": "Gulliksen-Lord-Novick reliable change index (Hsu 1989)",
    "HLL": "Hsu-Linn-Lord reliable change index (Hsu 1989)",
    "EN": "Edwards-Nunnally reliable change index (Speer 1992)",
    "NK": "Nunnally & Kotsch (1983) reliable change index",
    "HA": "Hageman & Arrindell (1999) RC_indiv",
    "HLM": "HLM: empirical Bayes slope (Raudenbush & Bryk 2002)",
}
INDEX_NAMES = {
    "threshold": "change = last - first (points)", "anchor": "change = last - first (points)",
    "percentage": "(last - first) / first",
    "JT": "(post - pre) / sqrt(2 SE^2), SE = S1 sqrt(1 - r)",
    "GLN": "((post - M1) - r (pre - M1)) / (S1 sqrt(1 - r^2))",
    "HLL": "((post - M2) - r (pre - M1)) / (S1 sqrt(1 - r^2))",
    "EN": "(post - (r (pre - M1) + M1)) / (S1 sqrt(1 - r))",
    "NK": "(post - (r1 (pre - M1) + M1)) / sqrt(r1^2 S1^2 (1 - r1) + S1^2 (1 - r2))",
    "HA": "((post - pre) r_dd + (M2 - M1)(1 - r_dd)) / (sqrt(r_dd) sqrt(2 SE^2))",
    "HLM": "random-slope conditional mode / its conditional SD",
}
REFERENCE_SAMPLE = "closed episodes with a pair of scores, all clinics of the snapshot"
IMPLEMENTATION = ("R package clinicalsignificance v3 (Claus et al.; github.com/benediktclaus/"
                  "clinicalsignificance), checked against its published outputs")
SCHEMA = {
    "instrument": pl.String, "name": pl.String, "direction": pl.String, "method": pl.String,
    "method_name": pl.String, "change_index": pl.String, "improvement_threshold": pl.Float64,
    "deterioration_threshold": pl.Float64, "alpha": pl.Float64, "sided": pl.String,
    "critical_value": pl.Float64, "boundary": pl.String, "reliability": pl.Float64,
    "reliability_post": pl.Float64, "sd_pre": pl.Float64, "sd_pre_source": pl.String,
    "score_decimals": pl.Int32, "min_measurements": pl.Int32,
    "reference_population": pl.String, "reference_episodes": pl.Int64,
    "reference_mean_pre": pl.Float64, "reference_sd_pre": pl.Float64,
    "reference_mean_post": pl.Float64, "reference_sd_post": pl.Float64,
    "reference_correlation": pl.Float64, "hlm_mean_slope": pl.Float64,
    "hlm_sd_slope": pl.Float64, "cutoff": pl.Float64, "cutoff_kind": pl.String,
    "cutoff_population": pl.String, "value_belongs_to": pl.String,
    "functional_mean": pl.Float64, "functional_sd": pl.Float64,
    "dysfunctional_mean": pl.Float64, "dysfunctional_sd": pl.Float64,
    "dysfunctional_source": pl.String, "categories": pl.String, "benchmark_d": pl.Float64,
    "benchmark_label": pl.String, "benchmark_source": pl.String, "notes": pl.String,
    "sources": pl.String,
}


def _row(code: str, inst: Instrument, judged: JudgedChange, cut: dict,
         population: str | None, min_shown: int) -> dict:
    rule = inst.change_rule
    assert rule is not None
    stats = judged.statistics.filter(pl.col("instrument") == code)
    st = stats.row(0, named=True) if stats.height else {}
    n_ref = st.get("_n_ref")
    shown = n_ref is not None and n_ref >= max(rule.min_reference_episodes, min_shown)
    sample_sd = rule.method != "JT" or rule.sd_pre is None
    fit = judged.growth.get(code)
    cutoff = rule.cutoff
    dys = cutoff.dysfunctional if cutoff else None
    func = cutoff.functional if cutoff else None
    uses_dys = cutoff is not None and cutoff.kind != "published"
    index_method = rule.method not in ("threshold", "anchor", "percentage")
    categories = [c for c in CATEGORIES
                  if (cutoff is not None or c not in ("recovered", "harmed"))
                  and (rule.harmed or c != "harmed")]
    sources = [*rule.sources, *(cutoff.sources if cutoff else []), *inst.sources,
               *([IMPLEMENTATION] if index_method or rule.method != "threshold" else [])]
    notes = []
    if rule.uses_sample:
        notes.append(f"Sample statistics: {REFERENCE_SAMPLE}; at least "
                     f"{rule.min_reference_episodes} episodes.")
    if rule.method == "HLM":
        notes.append(f"Episodes with at least {rule.min_measurements} scores; time = the "
                     "session's position in the episode.")
    if rule.method == "percentage":
        notes.append("From an intake of 0 a move in the better direction is improved.")
    return {
        "instrument": code, "name": inst.name, "direction": inst.direction,
        "method": rule.method, "method_name": METHOD_NAMES[rule.method],
        "change_index": INDEX_NAMES[rule.method],
        "improvement_threshold": rule.improvement_threshold,
        "deterioration_threshold": rule.deterioration_threshold,
        "alpha": rule.alpha if index_method else None,
        "sided": rule.critical_sided if index_method else None,
        "critical_value": critical_value(rule.alpha, rule.critical_sided)
        if index_method else None,
        "boundary": "inclusive" if rule.inclusive else "strict",
        "reliability": rule.reliability, "reliability_post": (
            rule.reliability_post or rule.reliability) if rule.method == "NK" else None,
        "sd_pre": rule.sd_pre if rule.sd_pre is not None else (
            st.get("_s1") if shown and index_method and rule.method != "HLM" else None),
        "sd_pre_source": None if rule.method in ("threshold", "anchor", "percentage", "HLM")
        else ("published" if not sample_sd else "reference sample"),
        "score_decimals": inst.score_decimals,
        "min_measurements": rule.min_measurements if rule.method == "HLM" else None,
        "reference_population": REFERENCE_SAMPLE if rule.uses_sample else None,
        "reference_episodes": n_ref if rule.uses_sample else None,
        **{f"reference_{k}": (st.get(c) if shown and rule.uses_sample else None)
           for k, c in (("mean_pre", "_m1"), ("sd_pre", "_s1"), ("mean_post", "_m2"),
                        ("sd_post", "_s2"), ("correlation", "_rho"))},
        "hlm_mean_slope": float(fit.beta[1]) if fit and shown else None,
        "hlm_sd_slope": fit.sd_slope if fit and shown else None,
        "cutoff": cut.get("cutoff"), "cutoff_kind": cut.get("cutoff_criterion") or (
            cutoff.kind if cutoff else None),
        "cutoff_population": (population or cutoff.default_population)
        if cutoff is not None and cutoff.values else None,
        "value_belongs_to": cutoff.value_belongs_to if cutoff else None,
        "functional_mean": func.mean if func else None,
        "functional_sd": func.sd if func else None,
        "dysfunctional_mean": (dys.mean if dys and dys.mean is not None else
                               st.get("_m1") if uses_dys and shown else None),
        "dysfunctional_sd": (dys.sd if dys and dys.sd is not None else
                             st.get("_s1") if uses_dys and shown else None),
        "dysfunctional_source": ("published" if dys is not None else "reference sample (intake)")
        if uses_dys else None,
        "categories": ", ".join(categories),
        "benchmark_d": inst.benchmark.d if inst.benchmark else None,
        "benchmark_label": inst.benchmark.label if inst.benchmark else None,
        "benchmark_source": inst.benchmark.source if inst.benchmark else None,
        "notes": " ".join(notes) or None,
        "sources": "; ".join(dict.fromkeys(sources)),
    }


def outcome_definitions(
    instruments: dict[str, Instrument], judged: JudgedChange, population: str | None = None,
    min_shown: int = 10, nhs_measures: tuple[str, ...] = PAIRED_MEASURES,
) -> pl.DataFrame:
    """``outcome_definitions``: how each outcome instrument's change is judged (see module
    doc). Sample statistics are shown only for a reference sample of at least
    ``min_reference_episodes`` and ``min_shown`` (the minimum cell size) episodes."""
    cuts = {r["instrument"]: r for r in cutoff_values(
        instruments, population, judged.statistics).iter_rows(named=True)}
    rows = [_row(code, inst, judged, cuts.get(code, {}), population, min_shown)
            for code, inst in sorted(instruments.items())
            if inst.kind == "outcome" and inst.change_rule is not None]
    if all(m in instruments and instruments[m].caseness for m in nhs_measures):
        parts = [f"{instruments[m].name} >= {instruments[m].caseness.at_or_above:g}"
                 for m in nhs_measures]
        rows.append({
            "instrument": NHS_TT, "name": "NHS Talking Therapies (paired measures)",
            "direction": "higher_is_worse", "method": "programme",
            "method_name": "NHS Talking Therapies recovery and reliable change",
            "change_index": "each measure's own rule",
            "categories": "recovered, reliable improvement, reliable deterioration, "
                          "reliable recovery",
            "notes": ("Caseness: " + " or ".join(parts) + ". Finished a course of treatment: "
                      "ended with at least 2 attended sessions. Both measures need a pair of "
                      "scores (first and last available). Recovery rate = recovered / "
                      "(finished - not at caseness at start); reliable improvement: a "
                      "reliable improvement on one measure and no reliable deterioration on "
                      "the other."),
            "sources": "NHS Talking Therapies for anxiety and depression manual; OHID "
                       "Fingertips glossary (finished course of treatment); Gyani et al. "
                       "(2013) Behav Res Ther 51:597-606 (at least two outcome scores)",
        })
    return pl.DataFrame(rows, schema=SCHEMA) if rows else pl.DataFrame(schema=SCHEMA)
