"""The pipeline recovers planted truth: CIs cover the planted alliance-outcome correlation and
practice effect over several seeds, and show no effect when none is planted.

Two generators: this package's small one (tests/transforms/synthetic.py, always runs) and the
project generator ``tandem.synth`` (docs/generator.md).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl
import pytest

from tests.transforms.conftest import RESPONSE_SCHEMA
from tests.transforms.synthetic import generate
from transforms.marts import MartParams, build_marts

SEEDS = range(5)
PARAMS = MartParams(as_of=dt.date(2025, 12, 31), min_cell_size=1)


def estimate(marts, mart, instrument, **where):
    df = marts[mart].filter(pl.col("scope") == "all", pl.col("instrument") == instrument)
    for k, v in where.items():
        df = df.filter(pl.col(k) == v)
    return df.row(0, named=True)


def test_practice_effect_ci_covers_planted_value(instruments):
    covered = 0
    for seed in SEEDS:
        marts = build_marts(generate(seed, practice_effect=4.0), instruments, PARAMS)
        row = estimate(marts, "dir_practice_effect", "ORS", practice="all")
        covered += row["ci_low"] <= 4.0 <= row["ci_high"]
    assert covered >= len(SEEDS) - 1   # 95% intervals: at most one miss in five


def test_no_planted_effect_shows_none(instruments):
    covered = 0
    for seed in SEEDS:
        marts = build_marts(generate(seed, practice_effect=0.0, alliance_slope=0.0),
                            instruments, PARAMS)
        pe = estimate(marts, "dir_practice_effect", "ORS", practice="all")
        r = estimate(marts, "dir_alliance_outcome", "ORS")
        covered += (pe["ci_low"] <= 0.0 <= pe["ci_high"]) + (r["ci_low"] <= 0.0 <= r["ci_high"])
    assert covered >= 2 * len(SEEDS) - 1


def test_alliance_outcome_r_ci_covers_the_population_r(instruments):
    """The planted r is computed from the model (slope * SD_alliance / SD_change among
    finished episodes) by simulating a very large sample of the same model."""
    big = build_marts(generate(99, n_clients=20_000), instruments, PARAMS)
    truth = estimate(big, "dir_alliance_outcome", "ORS")["estimate"]
    covered = 0
    for seed in SEEDS:
        marts = build_marts(generate(seed), instruments, PARAMS)
        row = estimate(marts, "dir_alliance_outcome", "ORS")
        covered += row["ci_low"] <= truth <= row["ci_high"]
    assert covered >= len(SEEDS) - 1   # 95% intervals: at most one miss in five


# --- the project generator (tandem.synth) -------------------------------------------------

def _responses_from_canonical(out) -> pl.DataFrame:
    """The ``responses`` frame straight from the generator's canonical CSV files (no
    pseudonymisation needed here): client_id stands in for client_key."""
    files = sorted(p for p in out.rglob("*.csv"))
    frames = []
    for path in files:
        head = path.open(encoding="utf-8-sig").readline()
        if not head.startswith("clinic_id,client_id,therapist_id,session_date"):
            continue
        frames.append(pl.read_csv(path, schema_overrides={"client_id": pl.String,
                                                          "therapist_id": pl.String}))
    # A generator that writes no canonical CSV is broken: fail, never skip.
    assert frames, f"the generator wrote no canonical CSV files under {out}"
    df = pl.concat(frames, how="vertical_relaxed").rename({"client_id": "client_key"})
    return df.with_columns(
        pl.col("session_date").str.to_date(),
        pl.lit(1).alias("batch_id"),
        pl.int_range(pl.len()).alias("source_row"),
    ).cast(RESPONSE_SCHEMA).select(list(RESPONSE_SCHEMA))


@pytest.mark.parametrize("no_effect", [False, True])
def test_tandem_synth_truth_is_recovered(instruments, tmp_path, no_effect):
    from tandem.synth import EffectSizes, FaultRates, GenerateOptions
    from tandem.synth import generate as synth_gen

    hits = {"alliance_outcome_r": 0, "practice_effect_ors": 0}
    seeds = [11, 12, 13]
    for seed in seeds:
        effects = EffectSizes().without_effects() if no_effect else EffectSizes()
        out = tmp_path / f"s{seed}"
        opts = GenerateOptions(out=out, seed=seed, faults=FaultRates.clean(), effects=effects,
                               scale=4.0)
        synth_gen(opts)
        manifest = json.loads((out / "manifest.json").read_text())
        truth = manifest.get("truth", {})
        marts = build_marts(_responses_from_canonical(out), instruments,
                            MartParams(as_of=opts.as_of, min_cell_size=1))
        r = estimate(marts, "dir_alliance_outcome", "ORS")
        pe = estimate(marts, "dir_practice_effect", "ORS", practice="all")
        t_r = truth.get("alliance_outcome_r", effects.alliance_outcome_r)
        t_pe = truth.get("practice_effect_ors", effects.practice_effect_ors)
        t_r = t_r.get("value", t_r) if isinstance(t_r, dict) else t_r
        t_pe = t_pe.get("value", t_pe) if isinstance(t_pe, dict) else t_pe
        hits["alliance_outcome_r"] += r["ci_low"] <= t_r <= r["ci_high"]
        hits["practice_effect_ors"] += pe["ci_low"] <= t_pe <= pe["ci_high"]
    assert all(h >= len(seeds) - 1 for h in hits.values()), hits
    assert np.isfinite(r["estimate"])
