"""The data-generating model's constants, and its calibration to the planted effects.

The planted estimands are defined on what the pipeline can observe (scores with
measurement noise, rounding and clipping), so the latent parameters are solved from them:
with intake, exposure and alliance independent, the observed change is a sum of
independent parts and the target correlation, regression coefficient and variance share
have closed forms (docs/generator.md, "Calibration"). The one quantity without a closed
form, the variance of practice exposure, comes from a fixed-seed pilot simulation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from tandem.synth.options import EffectSizes

# Sessions per episode: a dropout after the first session, else 2 + Poisson.
P_DROPOUT = 0.15
MEAN_EXTRA_SESSIONS = 5.5
MAX_SESSIONS = 30
P_SECOND_EPISODE = 0.08
SECOND_EPISODE_GAP = (91, 300)  # days between episodes: longer than the 90-day episode gap
SESSION_GAPS = np.array([5, 6, 7, 7, 7, 7, 7, 7, 8, 9, 14])  # days between sessions
# Forms sometimes not filled in at a session (the outcome measure always is).
P_FORM_SKIPPED = 0.03

# Practice checklist: P(item = 1) = logistic(item + therapist + client).
PRACTICE_ITEM_LOGIT = np.array([1.2, 0.6, 0.3, 0.0, -0.9, -1.6])
THERAPIST_PRACTICE_SD = 0.9
CLIENT_PRACTICE_SD = 0.5

# ORS (tenths, 0..10 per item): latent total T, items T/4 + noise.
ORS_INTAKE_MEAN = 19.0
ORS_INTAKE_SD_OBSERVED = 6.0
ORS_ITEM_NOISE = 1.2
ORS_MEAN_CHANGE = 4.0
ORS_INTAKE_SLOPE = -0.25  # sicker at intake, more room to improve
ORS_CHANGE_SD = 7.0  # SD of the observed change, first to last ORS total

# Latent alliance on the SRS total scale; SRS items A/4 + noise; WAI-SR total 8 + 1.2 A.
ALLIANCE_MEAN = 32.0
ALLIANCE_SD = 3.6
SRS_ITEM_NOISE = 0.7
WAISR_OFFSET, WAISR_SLOPE, WAISR_ITEM_NOISE = 8.0, 1.2, 0.4

# PHQ-9 (0..3 per item): latent total P, items round(P/9 + noise); GAD-7 follows P.
PHQ_INTAKE_MEAN = 16.0
PHQ_INTAKE_SD = 4.5
PHQ_ITEM_NOISE = 0.45
PHQ_MEAN_CHANGE = -6.0
PHQ_INTAKE_SLOPE = -0.3
PHQ_CHANGE_SD = 6.0
GAD_PER_PHQ = 0.72
GAD_CLIENT_SD = 1.5

ROUNDING_VAR = 1.0 / 12.0  # variance added by rounding to whole numbers

# Clipping at the scale ends (and, for the PHQ-9, rounding to whole answers) shrinks the
# observed effects a little below the closed-form ones. These ratios observed / planted
# were measured by simulation (100 x 60,000 clients each, default effects; standard errors
# about 0.002 for r and 0.01 for the coefficients); the latent effects are divided by them.
ORS_R_ATTENUATION = 0.9876
ORS_BETA_ATTENUATION = 0.9679
PHQ_R_ATTENUATION = 0.9708
PHQ_BETA_ATTENUATION = 0.9191


@dataclass(frozen=True)
class ModelParams:
    """Latent parameters solved from the planted effects."""

    exposure_mean: float
    exposure_var: float
    ors_intake_sd: float
    ors_beta: float
    ors_gamma: float
    ors_var_u: float
    ors_var_e: float
    phq_beta: float
    phq_gamma: float
    phq_var_u: float
    phq_var_e: float

    def to_json(self) -> dict:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def sessions_per_episode(rng: np.random.Generator, n: int) -> np.ndarray:
    extra = np.minimum(rng.poisson(MEAN_EXTRA_SESSIONS, n), MAX_SESSIONS - 2)
    return np.where(rng.random(n) < P_DROPOUT, 1, 2 + extra).astype(np.int64)


def practice_probability(therapist_theta: np.ndarray, client_c: np.ndarray) -> np.ndarray:
    """P(each checklist item = 1) for sessions: shape (n, 6)."""
    z = PRACTICE_ITEM_LOGIT[None, :] + (therapist_theta + client_c)[:, None]
    return 1.0 / (1.0 + np.exp(-z))


def _pilot_exposure(n_episodes: int = 40_000) -> tuple[float, float]:
    """Mean and variance of exposure over finished episodes (fixed seed: deterministic)."""
    rng = np.random.default_rng(20260630)
    theta = rng.normal(0, THERAPIST_PRACTICE_SD, 400)
    n = sessions_per_episode(rng, n_episodes)
    n = n[n >= 2]
    ep_theta = theta[rng.integers(0, 400, len(n))]
    ep_c = rng.normal(0, CLIENT_PRACTICE_SD, len(n))
    sess_ep = np.repeat(np.arange(len(n)), n)
    p = practice_probability(ep_theta[sess_ep], ep_c[sess_ep])
    share = (rng.random(p.shape) < p).mean(axis=1)
    present = rng.random(len(sess_ep)) >= P_FORM_SKIPPED
    num = np.bincount(sess_ep, weights=share * present, minlength=len(n))
    den = np.bincount(sess_ep, weights=present, minlength=len(n))
    e = num[den > 0] / den[den > 0]
    return float(e.mean()), float(e.var())


def _solve(
    r: float, beta: float, share: float, *, change_var: float, intake_var: float,
    noise_var: float, slope: float, alliance_var: float, alliance_noise: float,
    exposure_var: float,
) -> tuple[float, float, float]:
    """(gamma, var_u, var_e) so the observed change has the planted r, beta and share."""
    gamma = r * math.sqrt((alliance_var + alliance_noise) * change_var) / alliance_var
    cov_intake = slope * intake_var - noise_var
    residual = (change_var - cov_intake**2 / (intake_var + noise_var)
                - beta**2 * exposure_var)
    var_u = share * residual
    var_e = (change_var - slope**2 * intake_var - beta**2 * exposure_var
             - gamma**2 * alliance_var - var_u - 2 * noise_var)
    if var_e <= 0:
        raise ValueError("planted effects too large for the outcome's variance")
    return gamma, var_u, var_e


def calibrate(effects: EffectSizes) -> ModelParams:
    e_mean, e_var = _pilot_exposure()
    ors_noise = 4 * ORS_ITEM_NOISE**2
    ors_intake_var = ORS_INTAKE_SD_OBSERVED**2 - ors_noise
    ors_beta = effects.practice_effect_ors / ORS_BETA_ATTENUATION
    phq_beta = effects.practice_effect_phq9 / PHQ_BETA_ATTENUATION
    g_o, u_o, e_o = _solve(
        effects.alliance_outcome_r / ORS_R_ATTENUATION, ors_beta,
        effects.therapist_variance_share, change_var=ORS_CHANGE_SD**2,
        intake_var=ors_intake_var, noise_var=ors_noise, slope=ORS_INTAKE_SLOPE,
        alliance_var=ALLIANCE_SD**2, alliance_noise=4 * SRS_ITEM_NOISE**2 / 2,
        exposure_var=e_var,
    )
    phq_noise = 9 * (PHQ_ITEM_NOISE**2 + ROUNDING_VAR)
    waisr_var = (WAISR_SLOPE * ALLIANCE_SD) ** 2
    g_p, u_p, e_p = _solve(
        effects.alliance_outcome_r_phq9 / PHQ_R_ATTENUATION, phq_beta,
        effects.therapist_variance_share, change_var=PHQ_CHANGE_SD**2,
        intake_var=PHQ_INTAKE_SD**2, noise_var=phq_noise, slope=PHQ_INTAKE_SLOPE,
        alliance_var=waisr_var, alliance_noise=12 * (WAISR_ITEM_NOISE**2 + ROUNDING_VAR),
        exposure_var=e_var,
    )
    return ModelParams(
        exposure_mean=e_mean, exposure_var=e_var, ors_intake_sd=math.sqrt(ors_intake_var),
        ors_beta=ors_beta, ors_gamma=g_o, ors_var_u=u_o, ors_var_e=e_o,
        phq_beta=phq_beta, phq_gamma=g_p, phq_var_u=u_p, phq_var_e=e_p,
    )
