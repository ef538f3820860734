"""Therapist ids are clinic-local: T01 at two clinics are two people. Every model that treats a
therapist as a unit clusters by (clinic, therapist), and pooled models adjust for clinic."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from tests.transforms.synthetic import generate
from transforms.marts import MartParams, build_marts
from transforms.stats import ols_cluster

PARAMS = MartParams(as_of=dt.date(2024, 12, 31), min_cell_size=1)


@pytest.fixture(scope="module")
def two_clinics() -> dict[str, pl.DataFrame]:
    from tandem.core.contracts import load_instruments

    responses = pl.concat([generate(11, n_clients=400, n_therapists=8, clinic="C1"),
                           generate(12, n_clients=400, n_therapists=8, clinic="C2")])
    assert set(responses.filter(pl.col("clinic_id") == "C1")["therapist_id"]) == set(
        responses.filter(pl.col("clinic_id") == "C2")["therapist_id"])   # the same ids
    return build_marts(responses, load_instruments(), PARAMS)


def test_pooled_practice_effect_counts_therapists_per_clinic(two_clinics):
    eff = two_clinics["dir_practice_effect"].filter(
        (pl.col("scope") == "all") & (pl.col("practice") == "all")).row(0, named=True)
    assert eff["n_therapists"] == 16
    by_level = two_clinics["dir_practice_outcome"].filter(pl.col("clinic_id").is_null())
    assert by_level["n_therapists"].max() <= 16 and by_level["n_therapists"].max() > 8


def test_pooled_practice_effect_is_clustered_by_clinic_and_therapist_and_adjusts_for_clinic(
        two_clinics):
    """The pooled estimate equals OLS change ~ intake + exposure + clinic with CR1 clusters
    (clinic, therapist): G = 16 clusters, t on 15 df."""
    m = two_clinics["episode_measure"].filter(
        (pl.col("instrument") == "ORS") & pl.col("finished") & pl.col("change").is_not_null()
        & pl.col("exposure").is_not_null())
    x = np.column_stack([m["first_score"].to_numpy(), m["exposure"].to_numpy(),
                         (m["clinic_id"] == "C2").to_numpy().astype(float)])
    clusters = (m["clinic_id"] + "/" + m["therapist_id"]).to_numpy()
    fit = ols_cluster(m["change"].to_numpy(), x, clusters)
    assert fit.n_clusters == 16
    lo, hi = fit.ci(2)
    eff = two_clinics["dir_practice_effect"].filter(
        (pl.col("scope") == "all") & (pl.col("practice") == "all")
        & (pl.col("instrument") == "ORS")).row(0, named=True)
    assert eff["estimate"] == pytest.approx(fit.coef[2])
    assert (eff["ci_low"], eff["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
