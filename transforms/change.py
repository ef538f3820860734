"""Judging change over the population: the reference sample, the HLM growth fits, and every
episode's reliable change, cutoff and category (stage 2 of the marts).

Why stage 2: the sample-based methods (GLN, HLL, EN, NK, HA; JT without a published SD; cutoffs
a / b / c without published dysfunctional norms; HLM) use statistics of other episodes, so an
episode's category depends on the population, not on its client's rows alone. Published
thresholds need no sample, but are judged here too (one code path).

Reference sample (docs/outcomes.md): per instrument, every *closed* episode with a *pair* of
scores, all clinics of the snapshot. Closed, because an open episode's last score is an interim
one; all clinics, so that every clinic is judged against the same reference (a clinic director
comparing clinics expects one yardstick) and small clinics get stable estimates. Open episodes
are judged "so far" against it. The HLM model is fitted on the reference episodes with at
least ``min_measurements`` scores; every episode with that many (open ones too) gets its
empirical Bayes slope from the fitted model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from tandem.core.contracts import Instrument
from transforms.clinical_significance import classify_clinical_significance
from transforms.hlm import GrowthFit, fit_growth, slope_index
from transforms.reliable_change import classify_reliable_change, reference_statistics

# Where the judgement goes in episode_measure: after ``month``, before the alliance columns.
JUDGEMENT_COLUMNS = [
    "higher_is_better", "improvement", "change_method", "change_index", "reliable_change",
    "cutoff", "cutoff_criterion", "clinical_at_start", "functional_at_end", "crossed_cutoff",
    "cutoff_index", "category",
]


@dataclass(frozen=True)
class JudgedChange:
    """Classified measures, and what the population-level parameters were."""

    measure: pl.DataFrame
    statistics: pl.DataFrame  # per instrument: _n_ref, _m1, _s1, _m2, _s2, _rho
    growth: dict[str, GrowthFit] = field(default_factory=dict)
    growth_episodes: dict[str, int] = field(default_factory=dict)


def reference_sample(measure: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Closed episodes with a pair of scores (``paired`` and not ``open``)."""
    return measure.lazy().filter(pl.col("paired") & ~pl.col("open"))


def hlm_indices(
    scores: pl.DataFrame, reference: pl.DataFrame, instruments: dict[str, Instrument]
) -> tuple[pl.DataFrame, dict[str, GrowthFit], dict[str, int]]:
    """Per episode and HLM-judged instrument: ``_hlm_index``; the fits; episodes fitted."""
    parts, fits, fitted = [], {}, {}
    for code, inst in sorted(instruments.items()):
        rule = inst.change_rule
        if rule is None or rule.method != "HLM":
            continue
        mine = scores.filter(pl.col("instrument") == code)
        counts = mine.group_by("episode_id").agg(pl.len().alias("_n"))
        enough = counts.filter(pl.col("_n") >= rule.min_measurements).select("episode_id")
        mine = mine.join(enough, on="episode_id", how="semi")
        ref_ids = reference.filter(pl.col("instrument") == code).select("episode_id")
        ref = mine.join(ref_ids, on="episode_id", how="semi")
        fitted[code] = ref["episode_id"].n_unique()
        fit = fit_growth(ref) if fitted[code] >= rule.min_reference_episodes else None
        if fit is None:
            continue
        fits[code] = fit
        parts.append(slope_index(mine, fit).select(
            "episode_id", pl.lit(code).alias("instrument"),
            pl.col("hlm_index").alias("_hlm_index")))
    schema = {"episode_id": pl.String, "instrument": pl.String, "_hlm_index": pl.Float64}
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return frame, fits, fitted


def judge_change(
    measure: pl.DataFrame, scores: pl.DataFrame, instruments: dict[str, Instrument],
    population: str | None = None, reference: pl.DataFrame | None = None,
) -> JudgedChange:
    """Every episode measure with its change judged by its instrument's rule.

    ``measure``: episode measures (with ``paired``, ``open``); ``scores``: per scored
    administration of HLM-judged instruments (``episode_id``, ``instrument``, ``time``,
    ``score``); ``reference``: the reference sample (default :func:`reference_sample`)."""
    ref = reference if reference is not None else reference_sample(measure).collect()
    hlm, fits, fitted = hlm_indices(scores, ref, instruments)
    classified = classify_clinical_significance(
        classify_reliable_change(measure, instruments, ref, hlm), instruments, population
    ).collect()
    at = measure.columns.index("month") + 1
    cols = [*measure.columns[:at], *JUDGEMENT_COLUMNS,
            *[c for c in measure.columns[at:] if c not in JUDGEMENT_COLUMNS]]
    stats = reference_statistics(ref).collect().sort("instrument")
    return JudgedChange(classified.select(cols), stats, fits, fitted)
