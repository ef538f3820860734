"""Jacobson & Truax (1991) reliable change, respecting each instrument's direction.

SE = SD_pre * sqrt(1 - r_xx); S_diff = sqrt(2 * SE^2); RC = (post - pre) / S_diff; reliable when
|RC| > 1.96. Where the definition gives a published threshold in points (ORS 5, PHQ-9 6,
GAD-7 4: OpenFIT; NHS Talking Therapies manual), a change of at least that many points is
reliable. Both forms come from the instrument's ``reliable_change`` (YAML).
"""

from __future__ import annotations

import math

import polars as pl

from tandem.contracts import Instrument

RCI_CRITICAL = 1.96  # Jacobson & Truax (1991): |RC| > 1.96 (p < .05, two-sided)

IMPROVED, UNCHANGED, DETERIORATED = "improved", "unchanged", "deteriorated"


def s_diff(sd_pre: float, reliability: float) -> float:
    """Standard error of the difference between two scores (Jacobson & Truax 1991)."""
    se = sd_pre * math.sqrt(1.0 - reliability)
    return math.sqrt(2.0 * se * se)


def rc_index(pre: float, post: float, sd_pre: float, reliability: float) -> float:
    """RC = (post - pre) / S_diff."""
    return (post - pre) / s_diff(sd_pre, reliability)


def rules_frame(instruments: dict[str, Instrument]) -> pl.DataFrame:
    """Per instrument: direction, published threshold (points) or S_diff for the RC index."""
    rows = []
    for code, inst in instruments.items():
        rc = inst.reliable_change
        rows.append(
            {
                "instrument": code,
                "higher_is_better": inst.higher_is_better,
                "rc_threshold": rc.threshold if rc else None,
                "rc_s_diff": (
                    s_diff(rc.sd_pre, rc.reliability)
                    if rc and rc.threshold is None and rc.sd_pre is not None
                    and rc.reliability is not None
                    else None
                ),
            }
        )
    return pl.DataFrame(
        rows,
        schema={"instrument": pl.String, "higher_is_better": pl.Boolean,
                "rc_threshold": pl.Float64, "rc_s_diff": pl.Float64},
    )


def improvement_expr(change: pl.Expr = pl.col("change")) -> pl.Expr:
    """Change signed so that positive = better (needs ``higher_is_better``)."""
    return pl.when(pl.col("higher_is_better")).then(change).otherwise(-change)


def classify_reliable_change(
    measures: pl.DataFrame | pl.LazyFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """Add ``rc_index`` (when computed from SD and reliability), ``improvement`` (change,
    positive = better) and ``reliable_change`` (improved / unchanged / deteriorated; null
    where the instrument has no reliable-change rule or the change is unknown)."""
    imp = pl.col("improvement")
    by_threshold = (
        pl.when(imp >= pl.col("rc_threshold")).then(pl.lit(IMPROVED))
        .when(imp <= -pl.col("rc_threshold")).then(pl.lit(DETERIORATED))
        .otherwise(pl.lit(UNCHANGED))
    )
    rci = imp / pl.col("rc_s_diff")
    by_index = (
        pl.when(rci > RCI_CRITICAL).then(pl.lit(IMPROVED))
        .when(rci < -RCI_CRITICAL).then(pl.lit(DETERIORATED))
        .otherwise(pl.lit(UNCHANGED))
    )
    return (
        measures.lazy()
        .join(rules_frame(instruments).lazy(), on="instrument", how="left", maintain_order="left")
        .with_columns(improvement_expr().alias("improvement"))
        .with_columns(
            (pl.col("change") / pl.col("rc_s_diff")).alias("rc_index"),
            pl.when(pl.col("change").is_null()).then(None)
            .when(pl.col("rc_threshold").is_not_null()).then(by_threshold)
            .when(pl.col("rc_s_diff").is_not_null()).then(by_index)
            .otherwise(None)
            .alias("reliable_change"),
        )
        .drop("rc_threshold", "rc_s_diff")
    )
