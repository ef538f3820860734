"""Clinical significance (Jacobson & Truax 1991) and the four outcome categories.

The cutoff for an instrument is its published clinical cutoff when the definition has one
(ORS 25 adult, PHQ-9 10, GAD-7 8); otherwise it is derived from ``norms``:
(c) (SD_func * M_dys + SD_dys * M_func) / (SD_func + SD_dys) when both norms exist,
(b) within 2 SD of the functional mean when only functional norms exist,
(a) 2 SD beyond the dysfunctional mean when only dysfunctional norms exist.
An episode *crossed the cutoff* when its first score is in the dysfunctional range and its last
score in the functional range (functional: at or above the cutoff when higher is better,
below it when higher is worse, as PHQ-9 >= 10 is "caseness").

Categories: recovered (reliable improvement and crossed), improved (reliable improvement only),
deteriorated (reliable worsening), unchanged (otherwise).
"""

from __future__ import annotations

import polars as pl

from tandem.contracts import Instrument

RECOVERED, IMPROVED, UNCHANGED, DETERIORATED = "recovered", "improved", "unchanged", "deteriorated"


def cutoff(inst: Instrument, population: str | None = None) -> tuple[float | None, str | None]:
    """(cutoff, how it was obtained: published / a / b / c) for one instrument."""
    published = inst.cutoff(population)
    if published is not None:
        return published, "published"
    norms = inst.norms
    if norms is None:
        return None, None
    func, dys = norms.functional, norms.dysfunctional
    better = inst.higher_is_better
    if func and dys:
        return (func.sd * dys.mean + dys.sd * func.mean) / (func.sd + dys.sd), "c"
    if func:
        return (func.mean - 2 * func.sd if better else func.mean + 2 * func.sd), "b"
    if dys:
        return (dys.mean + 2 * dys.sd if better else dys.mean - 2 * dys.sd), "a"
    return None, None


def cutoffs_frame(
    instruments: dict[str, Instrument], population: str | None = None
) -> pl.DataFrame:
    rows = []
    for code, inst in instruments.items():
        value, how = cutoff(inst, population)
        rows.append({"instrument": code, "cutoff": value, "cutoff_criterion": how})
    return pl.DataFrame(
        rows, schema={"instrument": pl.String, "cutoff": pl.Float64, "cutoff_criterion": pl.String}
    )


def functional_expr(score: pl.Expr) -> pl.Expr:
    """Whether a score is in the functional range (needs ``cutoff`` and ``higher_is_better``)."""
    return (
        pl.when(pl.col("higher_is_better"))
        .then(score >= pl.col("cutoff"))
        .otherwise(score < pl.col("cutoff"))
    )


def classify_clinical_significance(
    measures: pl.LazyFrame, instruments: dict[str, Instrument], population: str | None = None
) -> pl.LazyFrame:
    """Add ``cutoff``, ``cutoff_criterion``, ``crossed_cutoff`` and ``category``. Needs the
    columns from :func:`transforms.reliable_change.classify_reliable_change`."""
    crossed = ~functional_expr(pl.col("first_score")) & functional_expr(pl.col("last_score"))
    rc = pl.col("reliable_change")
    return (
        measures.join(
            cutoffs_frame(instruments, population).lazy(), on="instrument", how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.when(pl.col("cutoff").is_null() | pl.col("change").is_null()).then(None)
            .otherwise(crossed).alias("crossed_cutoff")
        )
        .with_columns(
            pl.when(rc.is_null()).then(None)
            .when((rc == "improved") & pl.col("crossed_cutoff").fill_null(False))
            .then(pl.lit(RECOVERED))
            .otherwise(rc)
            .alias("category")
        )
    )
