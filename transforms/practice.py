"""Collaborative practice exposure per episode and outcomes compared across exposure levels.

Exposure (agreed estimand): for each checklist practice, the share of the episode's sessions
where it was used (item = 1) among sessions where the item was reported (a missing item is "not
reported", not "no", per the PRACTICE definition); the episode's ``exposure`` is the mean of
those shares over the practices (0..1). A *checklist* is any instrument of kind ``practice``
whose items are yes/no (item range 0..1). Instruments with a ``top_score`` rule (CollaboRATE)
give ``top_score_share``: the share of the episode's administrations at the top score.

Outcomes across exposure are **observational** and **adjusted for intake severity by
regression** (ANCOVA): ``change ~ intake + exposure`` (the practice effect, points per unit
exposure 0 -> 1) and ``change ~ intake + exposure level`` (adjusted mean change per level at the
mean intake), with standard errors clustered by therapist (CR1).

Therapist ids are clinic-local (T01 at two clinics are two people): a therapist, as a cluster
and in ``n_therapists``, is the pair (clinic, therapist). Models pooled over several clinics
add clinic fixed effects (a dummy per clinic but one), so the practice effect is estimated
within clinics and not confounded with differences between clinics; the adjusted level means
are evaluated at the pooled sample's clinic mix.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from tandem.core.contracts import Instrument
from transforms.stats import ols_cluster, wilson_exprs

ALL_PRACTICES = "all"
TOP_SCORE = "top_score"  # CollaboRATE: share of administrations with all items at 9
# Exposure levels for the stratified display (share of sessions with the practices).
LEVEL_BREAKS = (1 / 3, 2 / 3)
LEVEL_LABELS = ("low", "medium", "high")


def checklist_instruments(instruments: dict[str, Instrument]) -> list[str]:
    return [
        c for c, i in instruments.items()
        if i.kind == "practice" and i.item_range.min == 0 and i.item_range.max == 1
    ]


def practice_names(instruments: dict[str, Instrument]) -> list[str]:
    return [
        item.name or f"{code.lower()}_{item.number}"
        for code in checklist_instruments(instruments)
        for item in instruments[code].items
    ]


def episode_practice(
    items_ep: pl.LazyFrame, admins_ep: pl.LazyFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """Per episode: ``exposure``, ``practice_<name>`` shares, ``checklist_sessions`` and
    ``top_score_share`` / ``top_score_n``.

    ``items_ep``: answered items with ``episode_id`` and ``item_name``
    (see scoring.item_values); ``admins_ep``: administrations with ``episode_id``."""
    names = practice_names(instruments)
    per_item = (
        items_ep.group_by(["episode_id", "item_name"])
        .agg(pl.col("score").mean().alias("share"))
    )
    wide = per_item.group_by("episode_id").agg(
        # Summed in sorted order: a float mean must not depend on the order rows arrive in
        # (a plain ``sort().mean()`` is simplified back to ``mean()`` by the optimiser).
        (pl.col("share").sort().cum_sum().last() / pl.col("share").count()).alias("exposure"),
        *[
            pl.col("share").filter(pl.col("item_name") == n).first().alias(f"practice_{n}")
            for n in names
        ],
    )
    checklist_sessions = (
        items_ep.group_by("episode_id").agg(
            pl.struct("session_date", "session_number").n_unique().cast(pl.Int32)
            .alias("checklist_sessions")
        )
    )
    top = (
        admins_ep.filter(pl.col("top_score").is_not_null())
        .group_by("episode_id")
        .agg(
            pl.col("top_score").mean().alias("top_score_share"),
            pl.len().cast(pl.Int32).alias("top_score_n"),
        )
    )
    return (
        wide.join(checklist_sessions, on="episode_id", how="full", coalesce=True)
        .join(top, on="episode_id", how="full", coalesce=True)
    )


def practice_columns(instruments: dict[str, Instrument]) -> list[tuple[str, str]]:
    """(practice, episode column): ``all`` = mean exposure, each checklist practice's share,
    and ``top_score`` = the CollaboRATE top-score share (0..1 like the others)."""
    return [(ALL_PRACTICES, "exposure"),
            *[(n, f"practice_{n}") for n in practice_names(instruments)],
            (TOP_SCORE, "top_score_share")]


def _finite(frame: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
    return frame.drop_nulls(cols).filter(pl.all_horizontal(pl.col(cols).is_finite()))


def therapist_units(frame: pl.DataFrame) -> pl.Series:
    """One integer per (clinic, therapist): therapist ids are local to a clinic."""
    return frame.select(pl.struct("clinic_id", "therapist_id").rank("dense")).to_series()


def n_therapists(frame: pl.DataFrame) -> int:
    return frame.select("clinic_id", "therapist_id").n_unique() if frame.height else 0


def clinic_dummies(frame: pl.DataFrame) -> np.ndarray:
    """Clinic fixed effects: an indicator per clinic but the first (none for one clinic)."""
    clinics = sorted(frame["clinic_id"].unique().to_list())
    cols = [(frame["clinic_id"] == c).to_numpy().astype(float) for c in clinics[1:]]
    return np.column_stack(cols) if cols else np.zeros((frame.height, 0))


def practice_effect(
    outcome: pl.DataFrame, instruments: dict[str, Instrument], scopes: list[str | None]
) -> pl.DataFrame:
    """``change ~ first_score + exposure`` per outcome instrument and practice (the mean
    exposure ``all`` and each practice's share), over finished episodes; coefficient of
    exposure in points per unit exposure 0 -> 1, 95% CI clustered by therapist.

    ``outcome``: finished episodes x measure with ``first_score``, ``change``, ``exposure``,
    ``practice_*``; ``scopes``: None = all clinics pooled, or a column to split by."""
    rows: list[dict] = []
    practices = practice_columns(instruments)
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]
    data = outcome.filter(pl.col("finished") & pl.col("instrument").is_in(outcomes))
    for scope in scopes:
        parts = data.partition_by(["instrument", scope] if scope else ["instrument"],
                                  as_dict=True)
        for key, part in parts.items():
            instrument = key[0]
            clinic = key[1] if scope else None
            for practice, col in practices:
                if col not in part.columns or part.schema[col] == pl.Null:
                    continue
                sub = _finite(part, ["change", "first_score", col])
                row = {
                    "scope": "clinic" if scope else "all",
                    "clinic_id": clinic,
                    "instrument": instrument,
                    "practice": practice,
                    "n": sub.height,
                    "n_clients": sub["client_key"].n_unique() if sub.height else 0,
                    "n_therapists": n_therapists(sub),
                    "estimate": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                }
                x = np.column_stack([sub["first_score"].to_numpy(), sub[col].to_numpy(),
                                     clinic_dummies(sub)]) if sub.height else None
                if (x is not None and sub.height >= max(5, x.shape[1] + 3)
                        and sub[col].std() > 0 and row["n_therapists"] >= 2):
                    fit = ols_cluster(sub["change"].to_numpy(), x,
                                      therapist_units(sub).to_numpy())
                    lo, hi = fit.ci(2)
                    row.update(estimate=float(fit.coef[2]), ci_low=lo, ci_high=hi)
                rows.append(row)
    return _frame(rows, {
        "scope": pl.String, "clinic_id": pl.String, "instrument": pl.String,
        "practice": pl.String, "n": pl.Int64, "n_clients": pl.Int64, "n_therapists": pl.Int64,
        "estimate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
    }).with_columns(
        pl.lit("change ~ intake + exposure (+ clinic when pooled); OLS, CR1 by clinic x "
               "therapist").alias("method"),
        pl.lit(True).alias("observational"),
    ).with_columns(pl.col(c).fill_nan(None) for c in ("estimate", "ci_low", "ci_high"))


def exposure_level(exposure: pl.Expr) -> pl.Expr:
    lo, hi = LEVEL_BREAKS
    return (
        pl.when(exposure.is_null()).then(None)
        .when(exposure < lo).then(pl.lit(LEVEL_LABELS[0]))
        .when(exposure < hi).then(pl.lit(LEVEL_LABELS[1]))
        .otherwise(pl.lit(LEVEL_LABELS[2]))
    )


def outcome_by_exposure_level(
    outcome: pl.DataFrame, instruments: dict[str, Instrument], scopes: list[str | None]
) -> pl.DataFrame:
    """Per outcome instrument, practice (``all`` = mean exposure, each checklist practice,
    ``top_score`` = CollaboRATE top-score share) and exposure level (share of sessions:
    low < 1/3 <= medium < 2/3 <= high), for all clinics (``clinic_id`` null) and per clinic:
    n, raw mean change, the severity-adjusted mean change (ANCOVA at the scope's mean intake,
    CR1 by therapist) with 95% CI, and the reliable improvement rate (Wilson). Change is
    signed so that positive = improvement. Observational."""
    rows: list[dict] = []
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]
    base = outcome.filter(pl.col("finished") & pl.col("instrument").is_in(outcomes))
    for practice, col in practice_columns(instruments):
        if col not in base.columns or base.schema[col] == pl.Null:
            continue
        data = _finite(base, ["improvement", "first_score", col]).with_columns(
            exposure_level(pl.col(col)).alias("level"))
        for scope in scopes:
            keys = ["instrument", scope] if scope else ["instrument"]
            for key, part in data.partition_by(keys, as_dict=True).items():
                rows += _level_rows(part, col, {
                    "clinic_id": key[1] if scope else None, "instrument": key[0],
                    "practice": practice})
    return _frame(rows, {
        "clinic_id": pl.String, "instrument": pl.String, "practice": pl.String,
        "level": pl.String, "n": pl.Int64, "n_clients": pl.Int64, "n_therapists": pl.Int64,
        "mean_exposure": pl.Float64, "raw_mean_improvement": pl.Float64,
        "adjusted_mean_improvement": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
        "reliably_improved": pl.Int64,
    }).with_columns(
        *wilson_exprs(pl.col("reliably_improved"), pl.col("n"), "reliable_improvement_rate"),
        pl.lit("ANCOVA: improvement ~ intake + level (+ clinic when pooled), at the mean "
               "intake and clinic mix; CR1 by clinic x therapist")
        .alias("adjustment"),
        pl.lit(True).alias("observational"),
        *[pl.col(c).fill_nan(None) for c in ("adjusted_mean_improvement", "ci_low", "ci_high")],
    ).sort("instrument", "practice", "clinic_id", "level", nulls_last=False)


def _level_rows(part: pl.DataFrame, col: str, cell: dict) -> list[dict]:
    """The exposure-level rows of one instrument x practice x scope (see above)."""
    levels = [lv for lv in LEVEL_LABELS if (part["level"] == lv).any()]
    if not levels:
        return []
    dummies = np.column_stack(
        [(part["level"] == lv).to_numpy().astype(float) for lv in levels[1:]]
    ) if len(levels) > 1 else np.zeros((part.height, 0))
    clinics = clinic_dummies(part)
    x = np.column_stack([part["first_score"].to_numpy(), dummies, clinics])
    can_fit = part.height > x.shape[1] + 2 and n_therapists(part) >= 2
    fit = ols_cluster(part["improvement"].to_numpy(), x,
                      therapist_units(part).to_numpy()) if can_fit else None
    mean_intake = float(part["first_score"].mean())
    clinic_mix = clinics.mean(axis=0) if clinics.shape[1] else np.zeros(0)
    rows = []
    for j, lv in enumerate(levels):
        sub = part.filter(pl.col("level") == lv)
        est = lo = hi = math.nan
        if fit is not None:
            c = np.zeros(len(fit.coef))
            c[0], c[1] = 1.0, mean_intake
            if j > 0:
                c[1 + j] = 1.0
            c[len(fit.coef) - len(clinic_mix):] = clinic_mix
            est, lo, hi = fit.contrast_ci(c)
        rows.append({
            **cell, "level": lv, "n": sub.height,
            "n_clients": sub["client_key"].n_unique(),
            "n_therapists": n_therapists(sub),
            "mean_exposure": float(sub[col].mean()),
            "raw_mean_improvement": float(sub["improvement"].mean()),
            "adjusted_mean_improvement": est, "ci_low": lo, "ci_high": hi,
            "reliably_improved": int((sub["reliable_change"] == "improved").sum()),
        })
    return rows


def _frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
