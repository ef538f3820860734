"""Alliance: SRS flags (total below 36, any drop), WAI-SR subscales, early alliance per
episode, and therapist summaries.

Thresholds come from each alliance instrument's ``alliance_flags`` (SRS: low_total_below 36,
flag_any_drop; Duncan et al. 2003 / OpenFIT). Early alliance follows the estimand agreed
with the data generator: the mean total over the episode's first ``EARLY_SESSIONS`` sessions
that have a score on the primary alliance measure; for clinics without SRS the WAI-SR total
at its first administration (session 3 in PHQ-9 clinics).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from tandem.core.contracts import Instrument
from transforms.stats import mean_t_exprs, pearson_with_ci, t_quantile, wilson_exprs

EARLY_SESSIONS = 2  # first two sessions with an SRS (agreed estimand; see docs/outcomes.md)


def alliance_instruments(instruments: dict[str, Instrument]) -> list[str]:
    """Alliance measures in preference order: those with session flags (SRS) first."""
    codes = [c for c, i in instruments.items() if i.kind == "alliance"]
    return sorted(codes, key=lambda c: (instruments[c].alliance_flags is None, c))


def session_alliance_flags(
    administrations: pl.LazyFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """Per administration of a flagged alliance measure: ``low_alliance`` (total below the
    instrument's threshold) and ``alliance_drop`` (lower than the client's previous session
    in the same episode). Needs ``episode_id``."""
    rules = [
        {"instrument": c, "low_below": i.alliance_flags.low_total_below,
         "flag_drop": i.alliance_flags.flag_any_drop}
        for c, i in instruments.items()
        if i.alliance_flags is not None
    ]
    schema = {"instrument": pl.String, "low_below": pl.Float64, "flag_drop": pl.Boolean}
    prev = pl.col("total").shift(1).over(
        ["episode_id", "instrument"], order_by=["session_date", "session_number"]
    )
    return (
        administrations.filter(pl.col("total").is_not_null())
        .join(pl.DataFrame(rules, schema=schema).lazy(), on="instrument", how="inner")
        .with_columns(
            (pl.col("total") < pl.col("low_below")).alias("low_alliance"),
            (pl.col("flag_drop") & (pl.col("total") < prev)).fill_null(False)
            .alias("alliance_drop"),
            (pl.col("total") - prev).alias("change_from_previous"),
        )
        .drop("low_below", "flag_drop")
    )


def early_alliance(
    administrations: pl.LazyFrame, instruments: dict[str, Instrument]
) -> pl.LazyFrame:
    """Per episode: ``early_alliance`` (mean of the first two SRS totals of the episode; when
    the episode has no SRS, the first WAI-SR total) and which instrument it came from."""
    codes = alliance_instruments(instruments)
    order = ["session_date", "session_number"]
    scored = administrations.filter(
        pl.col("total").is_not_null() & pl.col("instrument").is_in(codes)
    )
    flagged = [c for c in codes if instruments[c].alliance_flags is not None]
    sessional = (
        scored.filter(pl.col("instrument").is_in(flagged))
        .group_by(["episode_id", "instrument"])
        .agg(
            pl.col("total").sort_by(order).head(EARLY_SESSIONS).mean().alias("early_alliance"),
            pl.col("total").sort_by(order).head(EARLY_SESSIONS).len().alias("early_n"),
        )
    )
    single = (
        scored.filter(~pl.col("instrument").is_in(flagged))
        .group_by(["episode_id", "instrument"])
        .agg(
            pl.col("total").sort_by(order).first().alias("early_alliance"),
            pl.lit(1, dtype=pl.UInt32).alias("early_n"),
        )
    )
    rank = pl.DataFrame(
        {"instrument": codes, "_pref": list(range(len(codes)))},
        schema={"instrument": pl.String, "_pref": pl.Int32},
    ).lazy()
    return (
        pl.concat([sessional, single], how="vertical_relaxed")
        .join(rank, on="instrument", how="left")
        .group_by("episode_id")
        .agg(
            pl.col("early_alliance").sort_by("_pref").first(),
            pl.col("instrument").sort_by("_pref").first().alias("early_alliance_instrument"),
            pl.col("early_n").sort_by("_pref").first().cast(pl.Int32),
        )
    )


def clustered_mean(
    frame: pl.LazyFrame, by: list[str], value: str, cluster: str, prefix: str
) -> pl.LazyFrame:
    """Mean of ``value`` per ``by`` with a 95% interval robust to clustering (sessions of one
    client are not independent): var = G/(G-1) * sum_c(sum_i (x - mean))^2 / N^2, t on G-1 df."""
    means = frame.group_by(by).agg(pl.col(value).mean().alias("_m"))
    per_cluster = (
        frame.join(means, on=by, how="inner", nulls_equal=True)
        .group_by([*by, cluster])
        .agg((pl.col(value) - pl.col("_m")).sum().alias("_d"), pl.len().alias("_nc"))
        # A fixed row order: the float sums below must not depend on group-by output order.
        .sort([*by, cluster], nulls_last=True)
    )
    out = per_cluster.group_by(by).agg(
        (pl.col("_d") ** 2).sum().alias("_ss"),
        pl.col("_nc").sum().alias("_n"),
        pl.len().alias("_g"),
    )
    g = pl.col("_g").cast(pl.Float64)
    se = (g / (g - 1) * pl.col("_ss") / (pl.col("_n").cast(pl.Float64) ** 2)).sqrt()
    q = t_quantile(pl.col("_g") - 1)
    return (
        out.join(means, on=by, how="inner", nulls_equal=True)
        .with_columns(
            pl.col("_m").alias(prefix),
            pl.when(pl.col("_g") > 1).then(pl.col("_m") - q * se).alias(f"{prefix}_ci_low"),
            pl.when(pl.col("_g") > 1).then(pl.col("_m") + q * se).alias(f"{prefix}_ci_high"),
        )
        .drop("_m", "_ss", "_n", "_g")
    )


def therapist_alliance(
    flags: pl.LazyFrame, instrument: str, by: tuple[str, ...] = ("clinic_id", "therapist_id")
) -> pl.LazyFrame:
    """Per clinic and therapist: mean SRS total (interval clustered by client), n sessions,
    n clients, share of sessions below the low-alliance threshold and with a drop (Wilson)."""

    keys = list(by)
    srs = flags.filter(pl.col("instrument") == instrument)
    counts = srs.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("n_sessions"),
        pl.col("client_key").n_unique().cast(pl.Int64).alias("n_clients"),
        pl.col("low_alliance").sum().cast(pl.Int64).alias("_low"),
        pl.col("alliance_drop").sum().cast(pl.Int64).alias("_drop"),
    )
    mean = clustered_mean(srs, keys, "total", "client_key", "mean_total")
    return (
        counts.join(mean, on=keys, how="left", nulls_equal=True)
        .with_columns(
            *wilson_exprs(pl.col("_low"), pl.col("n_sessions"), "low_alliance_rate"),
            *wilson_exprs(pl.col("_drop"), pl.col("n_sessions"), "drop_rate"),
            pl.lit(instrument).alias("instrument"),
        )
        .drop("_low", "_drop")
        .sort(keys)
    )


def alliance_outcome(
    outcome: pl.DataFrame, instruments: dict[str, Instrument], scopes: list[str | None]
) -> pl.DataFrame:
    """Pearson r between early alliance and change (last - first, raw points) per outcome
    instrument over finished episodes, 95% CI by Fisher z. For ORS (higher = better) a positive
    r means better alliance goes with more improvement; for PHQ-9/GAD-7 the sign is reversed,
    so ``r_improvement`` (r with change signed so positive = better) is also given."""

    rows: list[dict] = []
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]
    data = outcome.filter(
        pl.col("finished") & pl.col("instrument").is_in(outcomes)
        & pl.col("early_alliance").is_not_null() & pl.col("change").is_not_null()
    )
    for scope in scopes:
        keys = ["instrument", scope] if scope else ["instrument"]
        for key, part in data.partition_by(keys, as_dict=True).items():
            x = part["early_alliance"].to_numpy()
            res = pearson_with_ci(x, part["change"].to_numpy())
            sign = 1.0 if instruments[key[0]].higher_is_better else -1.0
            slope, intercept = _line(x, part["improvement"].to_numpy())
            rows.append({
                "scope": "clinic" if scope else "all",
                "clinic_id": key[1] if scope else None,
                "instrument": key[0],
                "alliance_instrument": ",".join(sorted(part["early_alliance_instrument"]
                                                       .unique().drop_nulls().to_list())),
                "estimate": res["estimate"], "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                "r_improvement": sign * res["estimate"],
                "slope": slope, "intercept": intercept,
                "n": res["n"], "n_clients": part["client_key"].n_unique(),
            })
    schema = {
        "scope": pl.String, "clinic_id": pl.String, "instrument": pl.String,
        "alliance_instrument": pl.String, "estimate": pl.Float64, "ci_low": pl.Float64,
        "ci_high": pl.Float64, "r_improvement": pl.Float64, "slope": pl.Float64,
        "intercept": pl.Float64, "n": pl.Int64, "n_clients": pl.Int64,
    }
    out = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return out.with_columns(
        pl.lit("pearson r(early alliance, change); Fisher z 95% CI").alias("method"),
        pl.lit(True).alias("observational"),
        *[pl.col(c).fill_nan(None) for c in ("estimate", "ci_low", "ci_high", "r_improvement",
                                             "slope", "intercept")],
    )


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line y = intercept + slope * x (NaN when it cannot be fitted)."""
    mask = np.isfinite(x) & np.isfinite(y)
    x, y = x[mask], y[mask]
    if len(x) < 3 or np.std(x) == 0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def alliance_distribution(
    flags: pl.DataFrame, measure: pl.DataFrame, instruments: dict[str, Instrument]
) -> pl.DataFrame:
    """``dir_alliance_distribution``, for all clinics (``clinic_id`` null) and per clinic:

    - ``metric = band``: per alliance instrument, the count (``n``) and share (Wilson) in each
      score band [``band_low``, ``band_high``): SRS session totals (``measure`` =
      ``session total``, n = sessions, 2-point bands), WAI-SR totals at the episode's first
      administration (``measure`` = ``first total per episode``, n = episodes, 4-point bands);
    - ``metric = below_cutoff``: sessions with a flagged measure (SRS) below its threshold
      (``cutoff``, 36): ``below`` and ``below_rate`` (Wilson) over ``n`` sessions.
    Each row has its ``n_clients`` (so small bands are suppressed like every director cell)."""
    parts: list[pl.LazyFrame] = []
    flagged = {c: i for c, i in instruments.items() if i.alliance_flags is not None}
    single = [c for c, i in instruments.items() if i.kind == "alliance" and c not in flagged]
    sess = flags.lazy().filter(pl.col("instrument").is_in(list(flagged))).select(
        "clinic_id", "client_key", "instrument", pl.col("total").alias("value"),
        pl.lit("session total").alias("measure"), pl.lit(2.0).alias("_w"))
    first = measure.lazy().filter(pl.col("instrument").is_in(single)
                                  & pl.col("first_score").is_not_null()).select(
        "clinic_id", "client_key", "instrument", pl.col("first_score").alias("value"),
        pl.lit("first total per episode").alias("measure"), pl.lit(4.0).alias("_w"))
    # The maximum total (items x item maximum) joins the band below it: 40 -> [38, 40].
    top = {c: float(i.item_range.max) * len(i.items) for c, i in instruments.items()}
    values = pl.concat([sess, first], how="vertical_relaxed").with_columns(
        pl.min_horizontal(
            (pl.col("value") / pl.col("_w")).floor() * pl.col("_w"),
            pl.col("instrument").replace_strict(top, default=None, return_dtype=pl.Float64)
            - pl.col("_w"),
        ).alias("band_low"))
    for keys in ([], ["clinic_id"]):
        by = [*keys, "instrument", "measure"]
        totals = values.group_by(by).agg(pl.len().alias("_total"))
        bands = values.group_by([*by, "band_low", "_w"]).agg(
            pl.len().alias("n"), pl.col("client_key").n_unique().alias("n_clients"))
        bands = (bands.join(totals, on=by, how="left", nulls_equal=True) if keys
                 else bands.join(totals, on=by, how="left"))
        parts.append(bands.with_columns(
            (pl.col("band_low") + pl.col("_w")).alias("band_high"),
            pl.lit("band").alias("metric"),
            *wilson_exprs(pl.col("n"), pl.col("_total"), "share"),
        ).drop("_w", "_total"))
        for code, inst in flagged.items():
            cut = float(inst.alliance_flags.low_total_below)
            parts.append(sess.filter(pl.col("instrument") == code).group_by(
                [*keys, "instrument", "measure"]).agg(
                pl.len().alias("n"), pl.col("client_key").n_unique().alias("n_clients"),
                (pl.col("value") < cut).sum().alias("below"),
            ).with_columns(pl.lit("below_cutoff").alias("metric"), pl.lit(cut).alias("cutoff"),
                           *wilson_exprs(pl.col("below"), pl.col("n"), "below_rate")))
    if not parts:
        return pl.DataFrame(schema={"n_clients": pl.Int64})
    out = pl.concat(pl.collect_all(parts), how="diagonal_relaxed")
    if "clinic_id" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("clinic_id"))
    keys = ["metric", "clinic_id", "instrument", "measure", "band_low", "band_high"]
    keys = [k for k in keys if k in out.columns]
    return out.select(*keys, pl.exclude(keys)).sort(keys, nulls_last=False)


def alliance_outcome_bins(
    outcome: pl.DataFrame, instruments: dict[str, Instrument], scopes: list[str | None]
) -> pl.DataFrame:
    """``dir_alliance_outcome_bins``: the binned scatter of early alliance against outcome.
    Per outcome instrument, early-alliance instrument and early-alliance band (1 point for SRS
    means, 4 points for WAI-SR), over finished episodes with both: n episodes, n_clients, mean
    early alliance, mean improvement (points, + = better) with t CI. Bands with fewer than the
    minimum number of clients are suppressed like every director cell. Observational."""
    outcomes = [c for c, i in instruments.items() if i.kind == "outcome"]
    width = {c: (1.0 if i.alliance_flags is not None else 4.0) for c, i in instruments.items()
             if i.kind == "alliance"}
    w = pl.col("early_alliance_instrument").replace_strict(
        width, default=1.0, return_dtype=pl.Float64)
    data = outcome.lazy().filter(
        pl.col("finished") & pl.col("instrument").is_in(outcomes)
        & pl.col("early_alliance").is_not_null() & pl.col("improvement").is_not_null()
    ).with_columns(((pl.col("early_alliance") / w).floor() * w).alias("bin_low"),
                   w.alias("_w"))
    parts = []
    for scope in scopes:
        keys = [*([scope] if scope else []), "instrument", "early_alliance_instrument",
                "bin_low", "_w"]
        parts.append(data.group_by(keys).agg(
            pl.len().alias("n"), pl.col("client_key").n_unique().alias("n_clients"),
            pl.col("early_alliance").mean().alias("early_alliance"),
            *mean_t_exprs("improvement", "mean_improvement"),
        ).with_columns(pl.lit("clinic" if scope else "all").alias("scope")))
    out = pl.concat(pl.collect_all(parts), how="diagonal_relaxed")
    if "clinic_id" not in out.columns:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("clinic_id"))
    out = out.rename({"early_alliance_instrument": "alliance_instrument"}).with_columns(
        (pl.col("bin_low") + pl.col("_w")).alias("bin_high"),
        pl.lit(True).alias("observational")).drop("_w")
    keys = ["scope", "clinic_id", "instrument", "alliance_instrument", "bin_low", "bin_high"]
    return out.select(*keys, pl.exclude(keys)).sort(keys, nulls_last=False)
