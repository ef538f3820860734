"""Therapists, clients, episodes, sessions and every answer, vectorised per chunk of clients.

A chunk holds only its own clients, so a clinic of any size is generated (and streamed
to its files) in bounded memory. Dates are whole days since 1970-01-01.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from tandem.synth import model as m
from tandem.synth.clinics import N_ITEMS, ClinicSpec

EPOCH = dt.date(1970, 1, 1)


def day_number(d: dt.date) -> int:
    return (d - EPOCH).days


@dataclass(frozen=True)
class Therapists:
    """A clinic's therapists: practice propensity (logit), outcome effects, caseload share."""

    ids: np.ndarray
    theta: np.ndarray
    u: np.ndarray
    weight: np.ndarray


def make_therapists(spec: ClinicSpec, params: m.ModelParams,
                    rng: np.random.Generator) -> Therapists:
    """Therapist effects are independent of practice propensity, and made exactly
    uncorrelated with it (caseload-weighted) within the clinic: with a few therapists a
    chance correlation would otherwise confound the planted practice effect."""
    n = len(spec.therapists)
    var_u = params.ors_var_u if spec.family == "ORS" else params.phq_var_u
    weight = rng.gamma(4.0, 1.0, n)
    weight = weight / weight.sum()
    theta = rng.normal(0, m.THERAPIST_PRACTICE_SD, n)
    u = rng.normal(0, np.sqrt(var_u), n)
    if n >= 3:
        tc = theta - weight @ theta
        u = u - tc * (weight @ (tc * u)) / (weight @ (tc * tc))
    return Therapists(ids=np.array(spec.therapists, dtype=object), theta=theta, u=u,
                      weight=weight)


@dataclass
class Chunk:
    """The generated clients of one chunk. Sessions are ordered by client, episode, session."""

    client_ids: np.ndarray  # (clients,) str
    sess_client: np.ndarray  # (sessions,) index into client_ids
    sess_episode: np.ndarray  # (sessions,) index into episodes
    sess_therapist: np.ndarray  # (sessions,) index into the clinic's therapists
    sess_day: np.ndarray  # (sessions,) days since 1970-01-01
    sess_number: np.ndarray  # (sessions,) 1.. within the client's care at the clinic
    # instrument -> (session index (k,), scores (k, items)); ORS and SRS scores in tenths
    admins: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)  # one entry per episode

    @property
    def n_sessions(self) -> int:
        return len(self.sess_day)

    @property
    def n_administrations(self) -> int:
        return sum(len(s) for s, _ in self.admins.values())


def _within_group_index(groups: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal (sorted) group values."""
    if len(groups) == 0:
        return groups.copy()
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    lengths = np.diff(np.r_[starts, len(groups)])
    return np.arange(len(groups)) - np.repeat(starts, lengths)


def generate_chunk(
    spec: ClinicSpec, therapists: Therapists, params: m.ModelParams, rng: np.random.Generator,
    n_clients: int, first_number: int, as_of: dt.date,
) -> tuple[Chunk, int]:
    """``n_clients`` new clients with every session and answer; ids from ``first_number``."""
    numbers = first_number + np.cumsum(rng.integers(1, 4, n_clients))
    client_ids = spec.client_id(numbers)

    # Episodes: one per client, sometimes a second after a gap longer than 90 days.
    n_eps = 1 + (rng.random(n_clients) < m.P_SECOND_EPISODE)
    n_sess = m.sessions_per_episode(rng, 2 * n_clients).reshape(n_clients, 2)
    gaps = rng.choice(m.SESSION_GAPS, size=(n_clients, 2, m.MAX_SESSIONS))
    gaps[:, :, 0] = 0
    offsets = np.cumsum(gaps, axis=2)
    span = np.take_along_axis(offsets, (n_sess - 1)[:, :, None], axis=2)[:, :, 0]
    between = rng.integers(*m.SECOND_EPISODE_GAP, n_clients, endpoint=True)
    start_day, last_day = day_number(spec.started_on), day_number(as_of) - 1
    window = last_day - start_day
    total = span[:, 0] + np.where(n_eps == 2, between + span[:, 1], 0)
    n_eps = np.where(total > window, 1, n_eps)  # no room for a second episode
    total = np.where(n_eps == 2, total, span[:, 0])
    client_start = start_day + np.floor(rng.random(n_clients) * (window - total + 1)).astype(
        np.int64)

    ep_client = np.repeat(np.arange(n_clients), n_eps)
    ep_no = _within_group_index(ep_client)
    ep_n = n_sess[ep_client, ep_no]
    ep_start = client_start[ep_client] + np.where(
        ep_no == 1, span[ep_client, 0] + between[ep_client], 0)
    n_ep = len(ep_client)
    ep_therapist = rng.choice(len(therapists.ids), size=n_ep, p=therapists.weight)

    sess_ep = np.repeat(np.arange(n_ep), ep_n)
    idx_in_ep = _within_group_index(sess_ep)  # 0-based
    sess_day = ep_start[sess_ep] + offsets[ep_client[sess_ep], ep_no[sess_ep], idx_in_ep]
    first_ep_n = n_sess[:, 0]
    sess_number = idx_in_ep + 1 + np.where(ep_no[sess_ep] == 1,
                                           first_ep_n[ep_client[sess_ep]], 0)
    n_s = len(sess_ep)
    sess_ther = ep_therapist[sess_ep]

    # Practice checklist at every session, drawn from the therapist's propensity.
    client_c = rng.normal(0, m.CLIENT_PRACTICE_SD, n_ep)
    p = m.practice_probability(therapists.theta[sess_ther], client_c[sess_ep])
    practice = (rng.random(p.shape) < p).astype(np.int16)
    practice_present = rng.random(n_s) >= m.P_FORM_SKIPPED
    share = practice.mean(axis=1)
    num = np.bincount(sess_ep, weights=share * practice_present, minlength=n_ep)
    den = np.bincount(sess_ep, weights=practice_present, minlength=n_ep)
    exposure = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    exposure_or_mean = np.where(den > 0, exposure, params.exposure_mean)

    alliance = rng.normal(m.ALLIANCE_MEAN, m.ALLIANCE_SD, n_ep)
    waisr_latent = m.WAISR_OFFSET + m.WAISR_SLOPE * alliance
    u = therapists.u[ep_therapist]
    denom = np.maximum(ep_n - 1, 1)
    x = idx_in_ep / denom[sess_ep]
    shape = 1.0 - (1.0 - x) ** 2  # most change early; 0 at the first session, 1 at the last

    admins: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    all_sessions = np.arange(n_s)

    def skip_mask() -> np.ndarray:
        return rng.random(n_s) >= m.P_FORM_SKIPPED

    if spec.family == "ORS":
        intake = rng.normal(m.ORS_INTAKE_MEAN, params.ors_intake_sd, n_ep)
        change = (m.ORS_MEAN_CHANGE + m.ORS_INTAKE_SLOPE * (intake - m.ORS_INTAKE_MEAN)
                  + params.ors_beta * (exposure_or_mean - params.exposure_mean)
                  + params.ors_gamma * (alliance - m.ALLIANCE_MEAN)
                  + u + rng.normal(0, np.sqrt(params.ors_var_e), n_ep))
        level = intake[sess_ep] + change[sess_ep] * shape
        ors = np.rint((level[:, None] / 4 + rng.normal(0, m.ORS_ITEM_NOISE, (n_s, 4))) * 10)
        admins["ORS"] = (all_sessions, np.clip(ors, 0, 100).astype(np.int16))
        srs_rows = np.flatnonzero(skip_mask())
        srs = np.rint((alliance[sess_ep[srs_rows]][:, None] / 4
                       + rng.normal(0, m.SRS_ITEM_NOISE, (len(srs_rows), 4))) * 10)
        admins["SRS"] = (srs_rows, np.clip(srs, 0, 100).astype(np.int16))
    else:
        intake = rng.normal(m.PHQ_INTAKE_MEAN, m.PHQ_INTAKE_SD, n_ep)
        change = (m.PHQ_MEAN_CHANGE + m.PHQ_INTAKE_SLOPE * (intake - m.PHQ_INTAKE_MEAN)
                  + params.phq_beta * (exposure_or_mean - params.exposure_mean)
                  + params.phq_gamma * (waisr_latent - (m.WAISR_OFFSET
                                                        + m.WAISR_SLOPE * m.ALLIANCE_MEAN))
                  + u + rng.normal(0, np.sqrt(params.phq_var_e), n_ep))
        level = intake[sess_ep] + change[sess_ep] * shape
        phq = np.rint(level[:, None] / 9 + rng.normal(0, m.PHQ_ITEM_NOISE, (n_s, 9)))
        admins["PHQ9"] = (all_sessions, np.clip(phq, 0, 3).astype(np.int16))
        gad_level = m.GAD_PER_PHQ * level + rng.normal(0, m.GAD_CLIENT_SD, n_ep)[sess_ep]
        gad = np.rint(gad_level[:, None] / 7 + rng.normal(0, m.PHQ_ITEM_NOISE, (n_s, 7)))
        admins["GAD7"] = (all_sessions, np.clip(gad, 0, 3).astype(np.int16))

    # WAI-SR at the third session of each episode.
    wai_rows = np.flatnonzero((idx_in_ep == 2) & skip_mask())
    wai = np.rint(waisr_latent[sess_ep[wai_rows]][:, None] / 12
                  + rng.normal(0, m.WAISR_ITEM_NOISE, (len(wai_rows), 12)))
    admins["WAISR"] = (wai_rows, np.clip(wai, 1, 5).astype(np.int16))

    # CollaboRATE follows the session's practices and the alliance.
    cr_rows = np.flatnonzero(skip_mask())
    centre = (5.5 + 5 * (share[cr_rows] - 0.5)
              + 0.15 * (alliance[sess_ep[cr_rows]] - m.ALLIANCE_MEAN)
              + rng.normal(0, 1.3, len(cr_rows)))
    cr = np.rint(centre[:, None] + rng.normal(0, 0.6, (len(cr_rows), 3)))
    admins["COLLABORATE"] = (cr_rows, np.clip(cr, 0, 9).astype(np.int16))

    pr_rows = np.flatnonzero(practice_present)
    admins["PRACTICE"] = (pr_rows, practice[pr_rows])

    for code, (_, scores) in admins.items():
        assert scores.shape[1] == N_ITEMS[code]

    ep_first = np.r_[0, np.cumsum(ep_n)[:-1]]
    truth = {
        "client": ep_client,
        "episode": ep_no + 1,
        "therapist": ep_therapist,
        "n_sessions": ep_n,
        "first_session_number": sess_number[ep_first],
        "start_day": sess_day[ep_first],
        "end_day": sess_day[ep_first + ep_n - 1],
        "intake_true": intake,
        "change_true": change,
        "exposure": exposure,
        "alliance_true": alliance if spec.family == "ORS" else waisr_latent,
        "therapist_effect": u,
    }
    return Chunk(
        client_ids=client_ids, sess_client=ep_client[sess_ep], sess_episode=sess_ep,
        sess_therapist=sess_ther, sess_day=sess_day, sess_number=sess_number,
        admins=admins, truth=truth,
    ), int(numbers[-1]) if n_clients else first_number


def observed_episode_measures(chunk: Chunk, family: str) -> dict[str, np.ndarray]:
    """Per episode, what the pipeline observes: intake, change, early alliance, exposure.

    Finished episodes only (two sessions or more). Early alliance: ORS clinics, the mean
    SRS total over the episode's first two sessions with an SRS; PHQ clinics, the WAI-SR
    total at session 3. NaN where the episode has none.
    """
    n_ep = len(chunk.truth["n_sessions"])
    outcome = "ORS" if family == "ORS" else "PHQ9"
    rows, scores = chunk.admins[outcome]
    totals = scores.sum(axis=1) / (10.0 if family == "ORS" else 1.0)
    ep = chunk.sess_episode[rows]
    first = np.full(n_ep, np.nan)
    last = np.full(n_ep, np.nan)
    first[ep[::-1]] = totals[::-1]  # the earliest row wins
    last[ep] = totals  # the latest row wins
    alliance = np.full(n_ep, np.nan)
    if family == "ORS":
        s_rows, s_scores = chunk.admins["SRS"]
        s_ep = chunk.sess_episode[s_rows]
        rank = _within_group_index(s_ep)
        keep = rank < 2
        num = np.bincount(s_ep[keep], weights=s_scores[keep].sum(axis=1) / 10.0,
                          minlength=n_ep)
        den = np.bincount(s_ep[keep], minlength=n_ep)
        alliance = np.where(den > 0, num / np.maximum(den, 1), np.nan)
    else:
        w_rows, w_scores = chunk.admins["WAISR"]
        alliance[chunk.sess_episode[w_rows]] = w_scores.sum(axis=1)
    finished = chunk.truth["n_sessions"] >= 2
    return {
        "finished": finished,
        "intake": first,
        "change": last - first,
        "alliance": alliance,
        "exposure": chunk.truth["exposure"],
        "therapist": chunk.truth["therapist"],
    }
