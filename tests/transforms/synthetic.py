"""A small vectorised generator with planted effects, for the pipeline's own recovery tests
(independent of tandem.synth): ORS + SRS + PRACTICE clinics and PHQ-9 + GAD-7 + WAI-SR ones."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from tests.transforms.conftest import RESPONSE_SCHEMA

START = dt.date(2023, 1, 2)


def generate(
    seed: int,
    n_clients: int = 1500,
    practice_effect: float = 4.0,
    alliance_slope: float = 0.5,
    n_therapists: int = 30,
    clinic: str = "C1",
) -> pl.DataFrame:
    """ORS clinic: change = 6 + alliance_slope*(early SRS - 34) - 0.3*(intake - 20)
    + practice_effect*exposure + noise."""
    rng = np.random.default_rng(seed)
    n_sess = rng.integers(1, 9, n_clients)
    therapist = rng.integers(0, n_therapists, n_clients)
    exposure_p = rng.beta(2, 2, n_clients)
    alliance = np.clip(rng.normal(34, 3, n_clients), 10, 40)
    intake = np.clip(rng.normal(20, 6, n_clients), 0, 40)
    start_day = rng.integers(0, 500, n_clients)
    cl = np.repeat(np.arange(n_clients), n_sess)
    s = np.concatenate([np.arange(k) for k in n_sess])
    n = len(cl)
    prac = (rng.random((n, 6)) < exposure_p[cl, None]).astype(float)
    # The planted effect acts on the realised exposure (the estimand), not on exposure_p.
    exposure = np.bincount(cl, prac.mean(axis=1), n_clients) / n_sess
    change = (6 + alliance_slope * (alliance - 34) - 0.3 * (intake - 20)
              + practice_effect * exposure + rng.normal(0, 5, n_clients))
    frac = np.where(n_sess[cl] > 1, s / np.maximum(n_sess[cl] - 1, 1), 0.0)
    ors = np.clip(intake[cl] + frac * change[cl], 0, 40)
    srs = np.clip(alliance[cl] + rng.normal(0, 0.01, n), 0, 40)
    dates = np.datetime64(START, "D") + (start_day[cl] + 7 * s).astype("timedelta64[D]")
    base = {
        "clinic_id": np.full(n, clinic),
        "client_key": np.char.add("k", cl.astype(str)),
        "therapist_id": np.char.add("T", therapist[cl].astype(str)),
        "session_date": dates,
        "session_number": (s + 1).astype(np.int32),
    }
    frames = []
    for code, items in (("ORS", np.repeat(ors[:, None] / 4, 4, axis=1)),
                        ("SRS", np.repeat(srs[:, None] / 4, 4, axis=1)),
                        ("PRACTICE", prac)):
        k = items.shape[1]
        frames.append(pl.DataFrame({
            **{c: np.repeat(v, k) for c, v in base.items()},
            "instrument": np.full(n * k, code),
            "item": np.tile(np.arange(1, k + 1), n),
            "score": items.reshape(-1),
            "batch_id": np.ones(n * k, dtype=np.int64),
            "source_row": np.repeat(np.arange(n), k),
        }))
    return pl.concat(frames).cast(RESPONSE_SCHEMA).select(list(RESPONSE_SCHEMA))
