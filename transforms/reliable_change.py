"""Reliable change: is a change more than measurement error? Every method of the reference
implementation (R package clinicalsignificance v3) and the published-threshold rule, chosen per
instrument in its YAML ``change:`` block (``tandem.core.contracts.ChangeRule``).

Notation: pre/post = the episode's first and last available score (a pair: at least two
scores, see ``episodes``); d = +1 when higher is better, -1 when higher is worse; r = the
instrument's reliability; M1, S1 / M2, S2 = mean and SD (n - 1) of the reference sample's pre /
post scores; SE = S1 sqrt(1 - r). Indices are signed as post - pre (as the package prints them);
the decision multiplies by d so that improvement is positive.

- ``threshold`` (published reliable change in points; ORS 5, PHQ-9 6, GAD-7 4) and ``anchor``
  (minimal important difference): change = post - pre at the score's recorded decimals;
  improved when d * change >= threshold, deteriorated when d * change <= -threshold
  (inclusive: the package's anchor rule, and the NHS Talking Therapies "6 or more").
- ``percentage``: (post - pre) / pre, inclusive; pre == post is unchanged; from a pre of 0 a
  move in the better direction is improved (the package ignores direction here: a rise from
  0 is "improved" even when lower is better; Tandem follows direction, see docs/outcomes.md).
- ``JT`` Jacobson & Truax (1991): (post - pre) / sqrt(2 SE^2), S1 published (``sd_pre``) or
  from the sample. ``GLN`` (Hsu 1989): ((post - M1) - r (pre - M1)) / (S1 sqrt(1 - r^2)).
  ``HLL``: ((post - M2) - r (pre - M1)) / (S1 sqrt(1 - r^2)). ``EN`` (Speer 1992):
  (post - (r (pre - M1) + M1)) / SE. ``NK`` Nunnally & Kotsch (1983): (post - (r1 (pre - M1)
  + M1)) / sqrt(r1^2 S1^2 (1 - r1) + S1^2 (1 - r2)). ``HA`` Hageman & Arrindell (1999):
  ((post - pre) r_dd + (M2 - M1)(1 - r_dd)) / (sqrt(r_dd) sqrt(2 SE^2)), r_dd from the
  sample's SDs and pre-post correlation. ``HLM``: empirical Bayes slope (``transforms.hlm``).
  Reliable when d * index > qnorm(1 - alpha/2) = 1.959964 (HA: one-sided qnorm(1 - alpha) =
  1.644854), strictly, as the package decides (an index of exactly 1.96 is reliable).

Reference sample (sample-based methods): the frame passed as ``reference``, per instrument; in
the marts every closed episode with a pair, all clinics of the snapshot (stage 2). With fewer
than ``min_reference_episodes`` pairs those statistics, and so the index, are null.
"""

from __future__ import annotations

import math
import statistics

import polars as pl

from tandem.core.contracts import Instrument

IMPROVED, UNCHANGED, DETERIORATED = "improved", "unchanged", "deteriorated"
# Columns the rules and reference statistics add (clinical_significance uses, then drops them).
STAT_COLUMNS = ["_n_ref", "_m1", "_s1", "_m2", "_s2", "_rho"]
RULE_COLUMNS = ["_rel", "_rel2", "_crit", "_decimals", "_min_ref"]


def critical_value(alpha: float = 0.05, sided: str = "two") -> float:
    """qnorm(1 - alpha/2) (two-sided) or qnorm(1 - alpha) (one-sided; HA)."""
    p = 1 - alpha / 2 if sided == "two" else 1 - alpha
    return statistics.NormalDist().inv_cdf(p)


RCI_CRITICAL = critical_value()  # 1.959963984540054, the package's qnorm(0.975)


def s_diff(sd_pre: float, reliability: float) -> float:
    """Standard error of the difference between two scores (Jacobson & Truax 1991)."""
    se = sd_pre * math.sqrt(1.0 - reliability)
    return math.sqrt(2.0 * se * se)


def rc_index(pre: float, post: float, sd_pre: float, reliability: float) -> float:
    """RC = (post - pre) / S_diff."""
    return (post - pre) / s_diff(sd_pre, reliability)


RULE_SCHEMA = {
    "instrument": pl.String, "higher_is_better": pl.Boolean, "change_method": pl.String,
    "_up": pl.Float64, "_down": pl.Float64, "_rel": pl.Float64, "_rel2": pl.Float64,
    "_sd_fixed": pl.Float64, "_crit": pl.Float64, "_inclusive": pl.Boolean,
    "_decimals": pl.Int32, "_min_ref": pl.Int64,
}


def rules_frame(instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Per instrument with a change rule: direction, method and its parameters."""
    rows = []
    for code, inst in instruments.items():
        rule = inst.change_rule
        if rule is None:
            rows.append({"instrument": code, "higher_is_better": inst.higher_is_better})
            continue
        rows.append({
            "instrument": code, "higher_is_better": inst.higher_is_better,
            "change_method": rule.method, "_up": rule.improvement_threshold,
            "_down": rule.deterioration_threshold, "_rel": rule.reliability,
            "_rel2": rule.reliability_post or rule.reliability, "_sd_fixed": rule.sd_pre,
            "_crit": critical_value(rule.alpha, rule.critical_sided),
            "_inclusive": rule.inclusive, "_decimals": inst.score_decimals,
            "_min_ref": rule.min_reference_episodes,
        })
    return pl.DataFrame(rows, schema=RULE_SCHEMA)


def paired_expr() -> pl.Expr:
    """Whether a row has a pair of scores (``paired`` when present, else first and last)."""
    return pl.col("first_score").is_not_null() & pl.col("last_score").is_not_null()


def reference_statistics(reference: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Per instrument: the reference sample's size, pre and post mean and SD (n - 1), and
    pre-post correlation, over its rows with a pair."""
    lf = reference.lazy()
    paired = pl.col("paired") if "paired" in lf.collect_schema() else paired_expr()
    pre, post = pl.col("first_score"), pl.col("last_score")
    return (
        lf.filter(paired & pre.is_not_null() & post.is_not_null())
        .sort("instrument", "first_score", "last_score")  # order-free float sums
        .group_by("instrument")
        .agg(pl.len().alias("_n_ref"), pre.mean().alias("_m1"), pre.std().alias("_s1"),
             post.mean().alias("_m2"), post.std().alias("_s2"),
             pl.corr(pre, post).alias("_rho"))
    )


def improvement_expr(change: pl.Expr = pl.col("change")) -> pl.Expr:
    """Change signed so that positive = better (needs ``higher_is_better``)."""
    return pl.when(pl.col("higher_is_better")).then(change).otherwise(-change)


def _index_expr() -> pl.Expr:
    """The method's index, signed as post - pre (null where it cannot be computed)."""
    pre, post, ch = pl.col("first_score"), pl.col("last_score"), pl.col("change")
    r, r2 = pl.col("_rel"), pl.col("_rel2")
    m1, s1, m2, s2 = pl.col("_m1"), pl.col("_s1"), pl.col("_m2"), pl.col("_s2")
    sample_ok = pl.col("_n_ref") >= pl.col("_min_ref")
    s1_jt = pl.coalesce(pl.col("_sd_fixed"), pl.when(sample_ok).then(s1))
    se = s1 * (1 - r).sqrt()
    se_pred = s1 * (1 - r * r).sqrt()
    r_xx1 = (s1 * s1 - se * se) / (s1 * s1)
    r_xx2 = (s2 * s2 - se * se) / (s2 * s2)
    rho = pl.col("_rho")
    r_dd = ((s1 * s1 * r_xx1 + s2 * s2 * r_xx2 - 2 * s1 * s2 * rho)
            / (s1 * s1 + s2 * s2 - 2 * s1 * s2 * rho))
    method = pl.col("change_method")
    by_sample = {
        "GLN": ((post - m1) - r * (pre - m1)) / se_pred,
        "HLL": ((post - m2) - r * (pre - m1)) / se_pred,
        "EN": (post - (r * (pre - m1) + m1)) / se,
        "NK": (post - (r * (pre - m1) + m1))
        / (r * r * s1 * s1 * (1 - r) + s1 * s1 * (1 - r2)).sqrt(),
        "HA": (ch * r_dd + (m2 - m1) * (1 - r_dd)) / (r_dd.sqrt() * (2 * se * se).sqrt()),
    }
    expr = (
        pl.when(method.is_in(["threshold", "anchor"])).then(ch)
        .when(method == "percentage").then(pl.when(pre != 0).then(ch / pre))
        .when(method == "JT").then(ch / ((2.0 ** 0.5) * s1_jt * (1 - r).sqrt()))
        .when(method == "HLM").then(pl.col("_hlm_index"))
    )
    for name, formula in by_sample.items():
        expr = expr.when((method == name) & sample_ok).then(formula)
    return expr.otherwise(None)


def _decision_expr() -> pl.Expr:
    """improved / unchanged / deteriorated from the index and the method's rule."""
    d = pl.when(pl.col("higher_is_better")).then(1.0).otherwise(-1.0)
    z = d * pl.col("change_index")
    points = pl.col("change_method").is_in(["threshold", "anchor", "percentage"])
    up = pl.when(points).then(pl.col("_up")).otherwise(pl.col("_crit"))
    down = pl.when(points).then(pl.col("_down")).otherwise(pl.col("_crit"))
    inclusive = pl.col("_inclusive")
    improved = pl.when(inclusive).then(z >= up).otherwise(z > up)
    deteriorated = pl.when(inclusive).then(z <= -down).otherwise(z < -down)
    # Percentage from a pre score of 0: no ratio; a move in the better direction is improved.
    from_zero = (pl.col("change_method") == "percentage") & (pl.col("first_score") == 0)
    dz = d * pl.col("change")
    return (
        pl.when(pl.col("change").is_null() | pl.col("change_method").is_null()).then(None)
        .when(from_zero & (dz > 0)).then(pl.lit(IMPROVED))
        .when(from_zero & (dz < 0)).then(pl.lit(DETERIORATED))
        .when(from_zero).then(pl.lit(UNCHANGED))
        .when(pl.col("change_index").is_null()).then(None)
        .when((pl.col("change_method") == "percentage") & (pl.col("change") == 0))
        .then(pl.lit(UNCHANGED))
        .when(improved).then(pl.lit(IMPROVED))
        .when(deteriorated).then(pl.lit(DETERIORATED))
        .otherwise(pl.lit(UNCHANGED))
    )


def classify_reliable_change(
    measures: pl.DataFrame | pl.LazyFrame,
    instruments: dict[str, Instrument],
    reference: pl.DataFrame | pl.LazyFrame | None = None,
    hlm_index: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """Add ``change`` (at the recorded decimals; null without a pair), ``improvement``
    (positive = better), ``change_method``, ``change_index`` and ``reliable_change``
    (improved / unchanged / deteriorated; null without a pair, a rule or the statistics the
    method needs), plus the reference statistics (``_m1`` ...) for clinical significance.

    ``reference``: the sample for the sample-based methods (default: ``measures``);
    ``hlm_index``: per ``episode_id`` and ``instrument`` the HLM index (``transforms.hlm``)."""
    lf = measures.lazy()
    schema = lf.collect_schema()
    paired = pl.col("paired") if "paired" in schema else paired_expr()
    stats = reference_statistics(reference if reference is not None else lf)
    if hlm_index is not None and "episode_id" in schema:
        lf = lf.join(hlm_index.lazy().select("episode_id", "instrument", "_hlm_index"),
                     on=["episode_id", "instrument"], how="left", maintain_order="left")
    else:
        lf = lf.with_columns(pl.lit(None, dtype=pl.Float64).alias("_hlm_index"))
    raw = pl.col("last_score") - pl.col("first_score")
    return (
        lf.join(rules_frame(instruments).lazy(), on="instrument", how="left",
                maintain_order="left")
        .join(stats, on="instrument", how="left", maintain_order="left")
        .with_columns(
            pl.when(paired).then(_round_change(raw)).alias("change"))
        .with_columns(improvement_expr().alias("improvement"))
        .with_columns(_index_expr().alias("change_index"))
        .with_columns(_decision_expr().alias("reliable_change"))
        .drop("_up", "_down", "_sd_fixed", "_inclusive", "_hlm_index")
    )


def _round_change(raw: pl.Expr) -> pl.Expr:
    """Change at the score's recorded decimals: 8.2 - 3.2 = 4.999999999999999 in binary
    floating point is the +5.0 a clinician reads (ORS totals have one decimal)."""
    scale = pl.lit(10.0) ** pl.col("_decimals").cast(pl.Float64)
    return pl.when(pl.col("_decimals").is_null()).then(raw).otherwise(
        (raw * scale).round(0) / scale)
