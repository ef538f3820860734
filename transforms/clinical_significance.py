"""Clinical significance: did the episode end in the functional range? The cutoff, the sides of
it, and the five outcome categories (Jacobson & Truax 1991; clinicalsignificance v3).

Cutoff (the instrument's ``change.cutoff``): ``published`` (ORS adult 25 / adolescent 28 /
child 32 by ``population``; PHQ-9 10; GAD-7 8), or from norms, d = +1 when higher is better:
(a) M_dys + d 2 SD_dys; (b) M_func - d 2 SD (SD_func as the paper defines it, or SD_dys as
the package computes it: ``b_sd``); (c) (SD_dys M_func + SD_func M_dys) / (SD_dys + SD_func).
Without published dysfunctional norms the dysfunctional population is the reference sample's
intake scores (the package's only choice). With method HA the cutoffs are Hageman &
Arrindell's "true" ones (each SD times the square root of its reliability, SE from the sample)
and the end is functional when the episode started clinical and d * CS_indiv > qnorm(1 -
alpha), CS_indiv = (M2 + (post - M2) r_post - c) / (sqrt(r_post) SE).

Sides (``value_belongs_to``; a score exactly on the cutoff): ``clinical`` (PHQ-9 10 is a case:
clinical d x <= d c), ``functional`` (ORS 25 is non-clinical: clinical d x < d c) or ``neither``
(the package: clinical at start d x < d c, functional at end d x > d c, both strict).

Categories (the package's combined approach, for every method): recovered = reliable
improvement, clinical at start and functional at end; improved = other reliable improvement;
unchanged; harmed = reliable deterioration, not clinical at start and not functional at end
(with complementary sides: crossed from the functional into the clinical range); deteriorated
= other reliable deterioration. ``harmed: false`` folds harmed into deteriorated. Without a
cutoff there is no recovered and no harmed; without a pair or a rule, no category.
"""

from __future__ import annotations

import polars as pl

from tandem.core.contracts import Instrument
from transforms.reliable_change import RULE_COLUMNS, STAT_COLUMNS, rules_frame

RECOVERED, IMPROVED, UNCHANGED = "recovered", "improved", "unchanged"
DETERIORATED, HARMED = "deteriorated", "harmed"
CATEGORIES = (RECOVERED, IMPROVED, UNCHANGED, DETERIORATED, HARMED)

CUTOFF_SCHEMA = {
    "instrument": pl.String, "_ckind": pl.String, "_cvalue": pl.Float64,
    "_belongs": pl.String, "_b_sd_clinical": pl.Boolean, "_mf": pl.Float64,
    "_sf": pl.Float64, "_md": pl.Float64, "_sd": pl.Float64, "_ha": pl.Boolean,
    "_harmed": pl.Boolean,
}


def cutoffs_frame(
    instruments: dict[str, Instrument], population: str | None = None
) -> pl.DataFrame:
    """Per instrument with a cutoff: its kind, published value (for ``population``), the side
    the value belongs to and the norms a / b / c need (null dysfunctional = the sample)."""
    rows = []
    for code, inst in instruments.items():
        rule = inst.change_rule
        if rule is None or rule.cutoff is None:
            continue
        cut = rule.cutoff
        func, dys = cut.functional, cut.dysfunctional
        rows.append({
            "instrument": code, "_ckind": cut.kind, "_cvalue": cut.published(population),
            "_belongs": cut.value_belongs_to, "_b_sd_clinical": cut.b_sd == "clinical",
            "_mf": func.mean if func else None, "_sf": func.sd if func else None,
            "_md": dys.mean if dys else None, "_sd": dys.sd if dys else None,
            "_ha": rule.method == "HA", "_harmed": rule.harmed,
        })
    return pl.DataFrame(rows, schema=CUTOFF_SCHEMA)


def cutoff_expr() -> pl.Expr:
    """The cutoff value per row (needs the cutoff and reference statistics columns)."""
    d = pl.when(pl.col("higher_is_better")).then(1.0).otherwise(-1.0)
    sample_ok = pl.col("_n_ref") >= pl.col("_min_ref")
    m_dys = pl.coalesce(pl.col("_md"), pl.when(sample_ok).then(pl.col("_m1")))
    s_dys = pl.coalesce(pl.col("_sd"), pl.when(sample_ok).then(pl.col("_s1")))
    m_f, s_f = pl.col("_mf"), pl.col("_sf")
    b_sd = pl.when(pl.col("_b_sd_clinical")).then(s_dys).otherwise(s_f)
    # Hageman & Arrindell: SDs times sqrt(reliability), r_x = (SD_x^2 - SE^2) / SD_x^2 with
    # SE = S1 sqrt(1 - r) from the reference sample.
    se2 = pl.col("_s1") ** 2 * (1 - pl.col("_rel"))
    sc = s_dys * ((s_dys ** 2 - se2) / s_dys ** 2).sqrt()
    sf_true = s_f * ((s_f ** 2 - se2) / s_f ** 2).sqrt()
    kind, ha = pl.col("_ckind"), pl.col("_ha")
    return (
        pl.when(kind == "published").then(pl.col("_cvalue"))
        .when((kind == "a") & ha).then(m_dys + d * 2 * sc)
        .when((kind == "b") & ha).then(m_f - d * 2 * sc)
        .when((kind == "c") & ha).then((sc * m_f + sf_true * m_dys) / (sc + sf_true))
        .when(kind == "a").then(m_dys + d * 2 * s_dys)
        .when(kind == "b").then(m_f - d * 2 * b_sd)
        .when(kind == "c").then((s_dys * m_f + s_f * m_dys) / (s_dys + s_f))
    )


def _sides(score: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(clinical, functional) for a score, by the side the cutoff value belongs to. Totals are
    exact sums (scoring adds in fixed point), so a total of 25 is exactly 25.0."""
    d = pl.when(pl.col("higher_is_better")).then(1.0).otherwise(-1.0)
    x = d * score
    c = d * pl.col("cutoff")
    belongs = pl.col("_belongs")
    clinical = (pl.when(belongs == "clinical").then(x <= c).otherwise(x < c))
    functional = (pl.when(belongs == "functional").then(x >= c).otherwise(x > c))
    return clinical, functional


def classify_clinical_significance(
    measures: pl.LazyFrame, instruments: dict[str, Instrument], population: str | None = None
) -> pl.LazyFrame:
    """Add ``cutoff``, ``cutoff_criterion``, ``clinical_at_start``, ``functional_at_end``,
    ``crossed_cutoff``, ``cutoff_index`` (HA's CS_indiv) and ``category``. Needs the columns
    of :func:`transforms.reliable_change.classify_reliable_change`."""
    lf = measures.lazy()
    if "_n_ref" not in lf.collect_schema():  # classified without reference statistics
        lf = lf.with_columns(*[pl.lit(None, dtype=pl.Float64).alias(c) for c in STAT_COLUMNS])
    if "higher_is_better" not in lf.collect_schema():
        raise ValueError("classify_reliable_change first")
    pre_clin, _ = _sides(pl.col("first_score"))
    _, post_func = _sides(pl.col("last_score"))
    d = pl.when(pl.col("higher_is_better")).then(1.0).otherwise(-1.0)
    se = pl.col("_s1") * (1 - pl.col("_rel")).sqrt()
    r_post = (pl.col("_s2") ** 2 - se ** 2) / pl.col("_s2") ** 2
    cs_indiv = ((pl.col("_m2") + (pl.col("last_score") - pl.col("_m2")) * r_post
                 - pl.col("cutoff")) / (r_post.sqrt() * se))
    has = pl.col("cutoff").is_not_null() & pl.col("change").is_not_null()
    ha = pl.col("_ha").fill_null(False)
    rc = pl.col("reliable_change")
    cp, fp = pl.col("clinical_at_start"), pl.col("functional_at_end")
    recovered = cp & fp & (rc == IMPROVED)
    harmed = ~cp & ~fp & (rc == DETERIORATED) & pl.col("_harmed")
    needs_cutoff = pl.col("_ckind").is_not_null()
    return (
        lf.join(cutoffs_frame(instruments, population).lazy(), on="instrument", how="left",
                maintain_order="left")
        .with_columns(cutoff_expr().alias("cutoff"))
        .with_columns(
            pl.when(pl.col("cutoff").is_null()).then(None)
            .when(ha & (pl.col("_ckind") != "published")).then(pl.col("_ckind") + "_true")
            .otherwise(pl.col("_ckind")).alias("cutoff_criterion"),
            pl.when(has & ha).then(cs_indiv).alias("cutoff_index"),
        )
        .with_columns(
            pl.when(pl.col("cutoff").is_not_null() & pl.col("first_score").is_not_null())
            .then(pre_clin).alias("clinical_at_start"),
        )
        .with_columns(
            pl.when(~has).then(None)
            .when(ha).then(cp & (d * pl.col("cutoff_index") > pl.col("_crit")))
            .otherwise(post_func).alias("functional_at_end"),
        )
        .with_columns(pl.when(has).then(cp & fp).alias("crossed_cutoff"))
        .with_columns(
            pl.when(rc.is_null()).then(None)
            .when(needs_cutoff & ~has).then(None)  # the cutoff could not be computed
            .when(~needs_cutoff).then(rc)
            .when(recovered).then(pl.lit(RECOVERED))
            .when(harmed).then(pl.lit(HARMED))
            .otherwise(rc)
            .alias("category")
        )
        .drop("_ckind", "_cvalue", "_belongs", "_b_sd_clinical", "_mf", "_sf", "_md", "_sd",
              "_ha", "_harmed", *RULE_COLUMNS, *STAT_COLUMNS)
    )


def cutoff_values(
    instruments: dict[str, Instrument], population: str | None = None,
    statistics: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """Per instrument with a cutoff: ``cutoff`` and ``cutoff_criterion`` (published, a, b, c,
    or a_true ... for HA); ``statistics``: the reference statistics
    (:func:`transforms.reliable_change.reference_statistics`; without them a cutoff that needs
    the sample is null)."""
    stats = (statistics.lazy() if statistics is not None else pl.LazyFrame(
        schema={"instrument": pl.String, **{c: pl.Float64 for c in STAT_COLUMNS}}))
    ha = pl.col("_ha")
    return (
        cutoffs_frame(instruments, population).lazy()
        .join(rules_frame(instruments).lazy(), on="instrument", how="left")
        .join(stats, on="instrument", how="left")
        .with_columns(cutoff_expr().alias("cutoff"))
        .select("instrument", "cutoff",
                pl.when(pl.col("cutoff").is_null()).then(None)
                .when(ha & (pl.col("_ckind") != "published")).then(pl.col("_ckind") + "_true")
                .otherwise(pl.col("_ckind")).alias("cutoff_criterion"))
        .sort("instrument").collect()
    )


def cutoff(inst: Instrument, population: str | None = None) -> tuple[float | None, str | None]:
    """(cutoff, criterion) of one instrument when it needs no sample (published, or from
    published norms); (None, None) otherwise."""
    out = cutoff_values({inst.code: inst}, population)
    if out.is_empty():
        return None, None
    row = out.row(0, named=True)
    return row["cutoff"], row["cutoff_criterion"]
