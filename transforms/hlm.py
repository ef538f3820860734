"""HLM reliable change: empirical Bayes slopes of a random-slope growth model.

The method of the R package clinicalsignificance v3 (``method = "HLM"``; Raudenbush & Bryk
2002): ``lme4::lmer(score ~ time + (time | episode), REML = TRUE)`` fitted on the episodes
with at least ``min_measurements`` scores (the package: >= 3); an episode's index is the
conditional mode of its random slope divided by its conditional SD (lme4 ``condVar``:
sigma^2 * Lambda (Lambda' Z'Z Lambda + I)^-1 Lambda', fixed effects treated as known). The
index is the episode's *deviation from the average slope*: one that improves exactly at the
average rate is "unchanged" however large that rate is.

Time is the session's position in the episode (``session_index``: 1, 2, ... with gaps where a
session has no score), as the package uses the measurement occasion as given. The model is
fitted on the reference episodes (closed, all clinics of the snapshot) and the conditional
modes of every episode with enough scores (open ones too) use the fitted parameters.

The REML criterion is lme4's profiled deviance, computed from per-episode sufficient statistics
(2 x 2 matrices, vectorised over episodes by the determinant lemma), minimised by Nelder-Mead
from lme4's start (1, 0, 1) and restarted once, as the reference implementation does: the
package's published fits (claus_2020 BDI, HAMD) are reproduced (tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class GrowthFit:
    """The fitted random intercept and slope model."""

    beta: np.ndarray  # intercept, slope
    theta: np.ndarray  # relative covariance factor [[t0, 0], [t1, t2]]
    sigma: float
    reml_criterion: float
    n_obs: int
    n_groups: int

    @property
    def covariance(self) -> np.ndarray:
        lam = _lambda(self.theta)
        return self.sigma ** 2 * lam @ lam.T

    @property
    def sd_intercept(self) -> float:
        return math.sqrt(self.covariance[0, 0])

    @property
    def sd_slope(self) -> float:
        return math.sqrt(self.covariance[1, 1])

    @property
    def corr(self) -> float:
        cov = self.covariance
        return float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]))


def _lambda(theta: np.ndarray) -> np.ndarray:
    return np.array([[theta[0], 0.0], [theta[1], theta[2]]])


@dataclass(frozen=True)
class _Groups:
    """Per-episode sufficient statistics: Z'Z (G x 2 x 2), Z'y (G x 2), y'y (G), n."""

    ztz: np.ndarray
    zty: np.ndarray
    yty: np.ndarray
    n: int

    @classmethod
    def of(cls, frame: pl.DataFrame) -> _Groups:
        g = frame.group_by("_g", maintain_order=True).agg(
            pl.len().cast(pl.Float64).alias("n"), pl.col("_t").sum().alias("st"),
            (pl.col("_t") ** 2).sum().alias("stt"), pl.col("_y").sum().alias("sy"),
            (pl.col("_t") * pl.col("_y")).sum().alias("sty"),
            (pl.col("_y") ** 2).sum().alias("syy"))
        n, st, stt = (g[c].to_numpy() for c in ("n", "st", "stt"))
        ztz = np.stack([np.stack([n, st], -1), np.stack([st, stt], -1)], -2)
        zty = np.stack([g["sy"].to_numpy(), g["sty"].to_numpy()], -1)
        return cls(ztz, zty, g["syy"].to_numpy(), int(frame.height))


def _inv2(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses and determinants of a stack of 2 x 2 matrices (closed form)."""
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    inv = np.empty_like(a)
    inv[:, 0, 0], inv[:, 1, 1] = a[:, 1, 1] / det, a[:, 0, 0] / det
    inv[:, 0, 1], inv[:, 1, 0] = -a[:, 0, 1] / det, -a[:, 1, 0] / det
    return inv, det


def _parts(theta: np.ndarray, gr: _Groups):
    """beta, r^2 = sum (y - Z beta)' V^-1 (y - Z beta), log det V and X'V^-1 X for V = Z Lambda
    Lambda' Z' + I per episode, with the 2 x 2 algebra written out element-wise (Woodbury and
    the determinant lemma: everything is a function of Z'Z, Z'y and y'y)."""
    t0, t1, t2 = theta
    n, st, stt = gr.ztz[:, 0, 0], gr.ztz[:, 0, 1], gr.ztz[:, 1, 1]
    sy, sty = gr.zty[:, 0], gr.zty[:, 1]
    # Z'Z Lambda (rows r0, r1) and A = Lambda' Z'Z Lambda + I
    r00, r01 = n * t0 + st * t1, st * t2
    r10, r11 = st * t0 + stt * t1, stt * t2
    a00 = t0 * r00 + t1 * r10 + 1.0
    a01 = t2 * r10
    a11 = t2 * r11 + 1.0
    det = a00 * a11 - a01 * a01
    i00, i01, i11 = a11 / det, -a01 / det, a00 / det

    def quad(u0, u1, v0, v1):  # u' A^-1 v per episode
        return u0 * (i00 * v0 + i01 * v1) + u1 * (i01 * v0 + i11 * v1)

    l0, l1 = t0 * sy + t1 * sty, t2 * sty  # Lambda' Z'y
    zvz00 = n - quad(r00, r01, r00, r01)
    zvz01 = st - quad(r00, r01, r10, r11)
    zvz11 = stt - quad(r10, r11, r10, r11)
    zvy0 = sy - quad(r00, r01, l0, l1)
    zvy1 = sty - quad(r10, r11, l0, l1)
    yvy = gr.yty - quad(l0, l1, l0, l1)
    xtvx = np.array([[zvz00.sum(), zvz01.sum()], [zvz01.sum(), zvz11.sum()]])
    xtvy = np.array([zvy0.sum(), zvy1.sum()])
    beta = np.linalg.solve(xtvx, xtvy)
    r2 = float(yvy.sum() - 2 * beta @ xtvy + beta @ xtvx @ beta)
    logdet = float(np.log(det).sum())
    return _lambda(theta), beta, r2, logdet, xtvx, None


def _criterion(theta: np.ndarray, gr: _Groups) -> float:
    _, _, r2, logdet, xtvx, _ = _parts(theta, gr)
    n, p = gr.n, 2
    if r2 <= 0:
        return math.inf
    return logdet + np.linalg.slogdet(xtvx)[1] + (n - p) * (1 + math.log(2 * math.pi * r2
                                                                          / (n - p)))


MAX_ITERATIONS = 1000  # the published fits converge in 100-300 iterations


def _nelder_mead(f, x0, step: float = 0.5, tol: float = 1e-14, max_iter: int = MAX_ITERATIONS):
    """Deterministic Nelder-Mead (the reference implementation's). Returns (x, f(x),
    converged)."""
    n = len(x0)
    pts = [np.array(x0, float)]
    for i in range(n):
        x = np.array(x0, float)
        x[i] += step
        pts.append(x)
    vals = [f(p) for p in pts]
    converged = False
    for _ in range(max_iter):
        idx = np.argsort(vals)
        pts = [pts[i] for i in idx]
        vals = [vals[i] for i in idx]
        if abs(vals[-1] - vals[0]) <= tol * (abs(vals[0]) + tol) and \
                max(np.max(np.abs(p - pts[0])) for p in pts[1:]) < 1e-10:
            converged = True
            break
        centroid = np.mean(pts[:-1], axis=0)
        xr = centroid + (centroid - pts[-1])
        fr = f(xr)
        if fr < vals[0]:
            xe = centroid + 2 * (centroid - pts[-1])
            fe = f(xe)
            pts[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = xr, fr
        else:
            xc = (centroid + 0.5 * (pts[-1] - centroid) if fr >= vals[-1]
                  else centroid + 0.5 * (xr - centroid))
            fc = f(xc)
            if fc < min(fr, vals[-1]):
                pts[-1], vals[-1] = xc, fc
            else:
                for i in range(1, n + 1):
                    pts[i] = pts[0] + 0.5 * (pts[i] - pts[0])
                    vals[i] = f(pts[i])
    i = int(np.argmin(vals))
    return pts[i], vals[i], converged


def _prepared(scores: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Rows with a score and a time, in a fixed order, with a group id per episode."""
    return (scores.lazy().filter(pl.col("score").is_not_null() & pl.col("time").is_not_null())
            .sort("episode_id", "time")
            .with_columns(pl.col("episode_id").alias("_g"),
                          pl.col("time").cast(pl.Float64).alias("_t"),
                          pl.col("score").cast(pl.Float64).alias("_y"))
            .collect())


def fit_growth(scores: pl.DataFrame | pl.LazyFrame) -> GrowthFit | None:
    """REML fit of ``score ~ time + (time | episode)`` (columns ``episode_id``, ``time``,
    ``score``); None with fewer than 3 episodes or observations than parameters allow, or when
    the optimiser does not converge (e.g. scores exactly on a line in every episode: the
    residual variance goes to 0 and the criterion has no minimum), as lme4 would warn."""
    data = _prepared(scores)
    gr = _Groups.of(data)
    if len(gr.yty) < 3 or gr.n <= 4:
        return None
    theta, _, converged = _nelder_mead(lambda t: _criterion(t, gr), [1.0, 0.0, 1.0])
    if not converged:
        return None
    theta, dev, converged = _nelder_mead(lambda t: _criterion(t, gr), theta, step=0.05)
    if not converged or not np.isfinite(dev):
        return None
    theta = np.array(theta, dtype=float)
    # lme4 keeps the diagonal of Lambda >= 0; Lambda Lambda' is unchanged when a whole column
    # changes sign, so normalise column-wise (never flip theta0 alone).
    if theta[0] < 0:
        theta[0], theta[1] = -theta[0], -theta[1]
    theta[2] = abs(theta[2])
    _, beta, r2, _, _, _ = _parts(theta, gr)
    sigma = math.sqrt(max(r2, 0.0) / (gr.n - 2))
    if sigma <= 1e-6 * max(float(data["_y"].std() or 0.0), 1e-12):
        return None  # no residual variance left: the criterion had no minimum
    return GrowthFit(beta, theta, sigma, float(dev), gr.n, len(gr.yty))


def slope_index(scores: pl.DataFrame | pl.LazyFrame, fit: GrowthFit) -> pl.DataFrame:
    """Per episode of ``scores``: the conditional mode of its random slope over its
    conditional SD under ``fit`` (``hlm_index``), and the conditional mode itself
    (``slope_deviation``)."""
    data = _prepared(scores)
    schema = {"episode_id": pl.String, "slope_deviation": pl.Float64, "hlm_index": pl.Float64}
    if data.is_empty():
        return pl.DataFrame(schema=schema)
    gr = _Groups.of(data)
    lam = _lambda(fit.theta)
    a = np.einsum("ji,gjk,kl->gil", lam, gr.ztz, lam) + np.eye(2)
    a_inv, _ = _inv2(a)
    resid = gr.zty - np.einsum("gij,j->gi", gr.ztz, fit.beta)  # Z'(y - Z beta)
    u = np.einsum("gij,gj->gi", a_inv, np.einsum("ji,gj->gi", lam, resid))
    b = np.einsum("ij,gj->gi", lam, u)
    cond_var = fit.sigma ** 2 * np.einsum("ij,gjk,lk->gil", lam, a_inv, lam)
    ids = data.select("_g").unique(maintain_order=True)["_g"]
    sd = np.sqrt(cond_var[:, 1, 1])
    return pl.DataFrame({"episode_id": ids, "slope_deviation": b[:, 1],
                         "hlm_index": np.where(sd > 0, b[:, 1] / np.where(sd > 0, sd, 1.0),
                                               np.nan)}, schema=schema
                        ).with_columns(pl.col("hlm_index").fill_nan(None))
