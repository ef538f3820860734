"""The planted effects hold for what the pipeline observes (large-sample simulation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tandem.synth import model as m
from tandem.synth.clinics import make_clinics
from tandem.synth.options import EffectSizes, GenerateOptions
from tandem.synth.population import generate_chunk, make_therapists, observed_episode_measures

N_CLIENTS = 120_000
N_THERAPISTS = 300


def _estimates(family: str, effects: EffectSizes, seed: int = 11) -> dict[str, float]:
    params = m.calibrate(effects)
    spec = next(s for s in make_clinics(GenerateOptions(out=Path("."), clinics=4))
                if s.format == "canonical_csv")
    spec = dataclasses.replace(spec, family=family, mapping={})
    spec = dataclasses.replace(
        spec, therapists=tuple(f"T{i:03d}" for i in range(N_THERAPISTS)), mapping={})
    rng = np.random.default_rng(seed)
    therapists = make_therapists(spec, params, rng)
    chunk, _ = generate_chunk(spec, therapists, params, rng, N_CLIENTS, 1000,
                              GenerateOptions(out=Path(".")).as_of)
    o = observed_episode_measures(chunk, family)
    k = o["finished"] & ~np.isnan(o["alliance"]) & ~np.isnan(o["exposure"])
    r = float(np.corrcoef(o["alliance"][k], o["change"][k])[0, 1])
    x = np.c_[np.ones(k.sum()), o["intake"][k], o["exposure"][k]]
    beta = np.linalg.lstsq(x, o["change"][k], rcond=None)[0]
    # one-way ANOVA estimate of the therapist share of the adjusted change
    res = o["change"][k] - x @ beta
    g = o["therapist"][k]
    n_g = np.bincount(g, minlength=N_THERAPISTS)
    mean_g = np.bincount(g, weights=res, minlength=N_THERAPISTS) / n_g
    msb = (n_g * (mean_g - res.mean()) ** 2).sum() / (N_THERAPISTS - 1)
    msw = ((res - mean_g[g]) ** 2).sum() / (len(res) - N_THERAPISTS)
    n0 = len(res) / N_THERAPISTS
    between = (msb - msw) / n0
    intake = o["intake"][o["finished"]]
    return {"r": r, "beta": float(beta[2]), "share": between / (between + msw),
            "intake_mean": float(intake.mean()), "intake_sd": float(intake.std()),
            "caseness": float((intake >= 10).mean())}


@pytest.mark.parametrize("family", ["ORS", "PHQ"])
def test_planted_effects_hold_in_observed_scores(family: str) -> None:
    eff = EffectSizes()
    est = _estimates(family, eff)
    r = eff.alliance_outcome_r if family == "ORS" else eff.alliance_outcome_r_phq9
    beta = eff.practice_effect_ors if family == "ORS" else eff.practice_effect_phq9
    assert est["r"] == pytest.approx(r, abs=0.015)
    assert est["beta"] == pytest.approx(beta, abs=0.35)
    assert est["share"] == pytest.approx(eff.therapist_variance_share, abs=0.02)
    if family == "ORS":
        assert est["intake_mean"] == pytest.approx(19, abs=0.5)
        assert est["intake_sd"] == pytest.approx(6, abs=0.5)
    else:
        assert est["caseness"] > 0.8


def test_no_effect_means_none() -> None:
    est = _estimates("ORS", EffectSizes().without_effects(), seed=12)
    assert est["r"] == pytest.approx(0, abs=0.015)
    assert est["beta"] == pytest.approx(0, abs=0.35)


def test_other_effect_sizes_are_carried() -> None:
    eff = dataclasses.replace(EffectSizes(), alliance_outcome_r=0.4, practice_effect_ors=6.0)
    est = _estimates("ORS", eff, seed=13)
    assert est["r"] == pytest.approx(0.4, abs=0.02)
    assert est["beta"] == pytest.approx(6.0, abs=0.4)


def test_impossible_effects_are_refused() -> None:
    with pytest.raises(ValueError):
        m.calibrate(dataclasses.replace(EffectSizes(), alliance_outcome_r=0.95))
