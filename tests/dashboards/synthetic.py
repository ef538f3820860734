"""A synthetic published snapshot for dashboard tests, the e2e test and the benchmark.

Responses for three clinics (two ORS/SRS/PRACTICE/CollaboRATE clinics, one PHQ-9/GAD-7/WAI-SR
clinic) go through the real ``transforms.marts.build_marts`` and ``tandem.core.published``,
with audit tables shaped like the warehouse's, so the pages are tested against the marts
they will read.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import polars as pl

from tandem.core import published
from tandem.core.contracts import load_instruments
from tandem.core.settings import Settings
from transforms.marts import MartParams, build_marts

START = dt.date(2024, 1, 1)
AS_OF = dt.date(2025, 12, 31)
RESPONSE_SCHEMA = {
    "clinic_id": pl.String, "client_key": pl.String, "therapist_id": pl.String,
    "session_date": pl.Date, "session_number": pl.Int32, "instrument": pl.String,
    "item": pl.Int16, "score": pl.Float64, "batch_id": pl.Int64, "source_row": pl.Int64,
}
# clinic -> (family, number of therapists, share of the clients)
CLINICS = {
    "northside": ("ors", 8, 0.45),
    "riverside": ("ors", 3, 0.15),
    "eastgate": ("phq", 6, 0.40),
}


def _items(rng: np.random.Generator, total: np.ndarray, k: int, lo: float, hi: float,
           decimals: int) -> np.ndarray:
    """Items of an administration whose mean tracks ``total / k`` with a little noise."""
    per = total[:, None] / k + rng.normal(0, 0.3, (len(total), k))
    per = np.clip(per, lo, hi)
    return np.round(per, decimals)


def clinic_responses(clinic: str, n_clients: int, seed: int, batch_ids: list[int]) -> pl.DataFrame:
    """Item responses for one clinic; ``batch_ids`` spread over the months."""
    family, n_ther, _ = CLINICS[clinic]
    rng = np.random.default_rng(seed)
    n_sess = rng.integers(1, 11, n_clients)
    therapist = rng.integers(0, n_ther, n_clients)
    ther_skill = rng.normal(0, 1.5, n_ther)
    exposure = np.clip(rng.beta(2, 2, n_clients) + 0.1 * ther_skill[therapist], 0, 1)
    alliance = rng.normal(0, 1, n_clients)
    start_day = rng.integers(0, (AS_OF - START).days - 60, n_clients)
    cl = np.repeat(np.arange(n_clients), n_sess)
    s = np.concatenate([np.arange(k) for k in n_sess])
    n = len(cl)
    frac = np.where(n_sess[cl] > 1, s / np.maximum(n_sess[cl] - 1, 1), 0.0)
    day = start_day[cl] + 7 * s
    dates = np.datetime64(START, "D") + day.astype("timedelta64[D]")
    months = day * len(batch_ids) // max(int(day.max()) + 1, 1)
    base = {
        "clinic_id": np.full(n, clinic),
        "client_key": np.char.add(f"{clinic[:2]}-k", cl.astype(str)),
        "therapist_id": np.char.add("T", np.char.zfill((therapist[cl] + 1).astype(str), 2)),
        "session_date": dates,
        "session_number": (s + 1).astype(np.int32),
        "batch_id": np.asarray(batch_ids, dtype=np.int64)[months],
    }
    blocks: list[tuple[str, np.ndarray, np.ndarray]] = []  # (code, mask, items)
    keep = np.ones(n, dtype=bool)
    if family == "ors":
        intake = np.clip(rng.normal(19, 6, n_clients), 2, 38)
        change = (5 + 1.5 * alliance + 4 * exposure - 0.3 * (intake - 19) + ther_skill[therapist]
                  + rng.normal(0, 5, n_clients))
        ors = np.clip(intake[cl] + frac * change[cl], 0, 40)
        srs = np.clip(36 + 2.5 * alliance[cl] + rng.normal(0, 1.5, n), 0, 40)
        blocks.append(("ORS", keep, _items(rng, ors, 4, 0, 10, 1)))
        srs_mask = rng.random(n) < 0.85
        blocks.append(("SRS", srs_mask, _items(rng, srs, 4, 0, 10, 1)))
        prac = (rng.random((n, 6)) < exposure[cl, None]).astype(float)
        blocks.append(("PRACTICE", rng.random(n) < 0.8, prac))
        collab_total = np.clip(6 + 3 * exposure[cl] + rng.normal(0, 1.2, n), 0, 9) * 3
        last = s == n_sess[cl] - 1
        blocks.append(("COLLABORATE", last, np.round(np.clip(
            collab_total[:, None] / 3 + rng.normal(0, 0.6, (n, 3)), 0, 9))))
    else:
        phq0 = np.clip(rng.normal(15, 5, n_clients), 0, 27)
        gad0 = np.clip(rng.normal(12, 4, n_clients), 0, 21)
        gain = np.clip(0.45 + 0.1 * alliance + 0.15 * ther_skill[therapist] / 1.5
                       + rng.normal(0, 0.3, n_clients), -0.4, 1)
        phq = np.clip(phq0[cl] * (1 - gain[cl] * frac), 0, 27)
        gad = np.clip(gad0[cl] * (1 - gain[cl] * frac), 0, 21)
        blocks.append(("PHQ9", keep, _items(rng, phq, 9, 0, 3, 0)))
        blocks.append(("GAD7", keep, _items(rng, gad, 7, 0, 3, 0)))
        wai = np.clip(48 + 6 * alliance[cl] + rng.normal(0, 3, n), 12, 60)
        blocks.append(("WAISR", rng.random(n) < 0.7, _items(rng, wai, 12, 1, 5, 0)))
    frames = []
    for code, mask, items in blocks:
        idx = np.flatnonzero(mask)
        k = items.shape[1]
        frames.append(pl.DataFrame({
            **{c: np.repeat(v[idx], k) for c, v in base.items()},
            "instrument": np.full(len(idx) * k, code),
            "item": np.tile(np.arange(1, k + 1), len(idx)),
            "score": items[idx].reshape(-1),
            "source_row": np.repeat(idx, k),
        }))
    return pl.concat(frames, how="diagonal").cast(RESPONSE_SCHEMA).select(list(RESPONSE_SCHEMA))


def audit_tables(responses: pl.DataFrame,
                 batches: dict[int, tuple[str, dt.date]]) -> dict[str, pl.DataFrame]:
    """``audit_batch``, ``audit_quarantine`` and ``audit_validation_result`` like the warehouse's,
    with one failed file, one duplicate and a few quarantined rows (one formula-looking)."""
    per = responses.group_by("batch_id").agg(pl.len().alias("rows")).sort("batch_id")
    counts = dict(zip(per["batch_id"].to_list(), per["rows"].to_list(), strict=True))
    rows, quarantine, results = [], [], []
    next_id = max(batches) + 1
    for bid, (clinic, day) in sorted(batches.items()):
        received = dt.datetime.combine(day, dt.time(6, 0), tzinfo=dt.UTC)
        q = 2 if bid % 3 == 0 else 0
        loaded = counts.get(bid, 0)
        rows.append({"batch_id": bid, "clinic_id": clinic,
                     "source_name": f"{clinic}-{day:%Y-%m}.csv", "stored_path": None,
                     "content_sha256": f"{bid:064x}", "size_bytes": loaded * 40,
                     "format": "canonical_csv", "received_at": received,
                     "finished_at": received + dt.timedelta(seconds=3), "status": "loaded",
                     "reason": None, "rows_received": loaded + q, "rows_loaded": loaded,
                     "rows_quarantined": q, "rows_duplicate": 0, "rows_replaced": 0,
                     "replaces_batch_id": None, "superseded_by_batch_id": None,
                     "duplicate_of_batch_id": None, "trigger": "schedule", "flow_run_id": None})
        for j in range(q):
            quarantine.append({
                "batch_id": bid, "clinic_id": clinic, "source_row": 100 + j,
                "rule": "score_in_item_range" if j == 0 else "therapist_on_roster",
                "column_name": "score" if j == 0 else "therapist_id",
                "reason": "score 14 outside 0..10" if j == 0 else "therapist T99 not on roster",
                "raw_values": json.dumps({"client_id": "=HYPERLINK(\"http://x\")" if bid == 3
                                          else "pseudonym", "score": "14"}),
                "quarantined_at": received + dt.timedelta(seconds=2)})
        for rule, etype, col in (("score_in_item_range", "expect_column_values_to_be_between",
                                  "score"),
                                 ("therapist_on_roster", "expect_column_values_to_be_in_set",
                                  "therapist_id"),
                                 ("session_date_not_future", "expect_column_values_to_be_between",
                                  "session_date")):
            bad = (1 if q and rule != "session_date_not_future" else 0)
            results.append({"batch_id": bid, "rule": rule, "expectation_type": etype,
                            "column_name": col, "success": bad == 0,
                            "element_count": loaded + q, "unexpected_count": bad,
                            "validated_at": received + dt.timedelta(seconds=1)})
    last_day = max(d for _, d in batches.values())
    failed_at = dt.datetime.combine(last_day, dt.time(7, 0), tzinfo=dt.UTC)
    for bid, status, reason in ((next_id, "failed", "header missing column 'session_date'"),
                                (next_id + 1, "duplicate_file", "same content as batch 1")):
        rows.append({**rows[0], "batch_id": bid, "source_name": f"northside-extra-{bid}.csv",
                     "content_sha256": f"{bid:064x}", "received_at": failed_at,
                     "finished_at": failed_at, "status": status, "reason": reason,
                     "rows_received": 0 if status == "failed" else rows[0]["rows_received"],
                     "rows_loaded": 0, "rows_quarantined": 0,
                     "rows_duplicate": 0 if status == "failed" else rows[0]["rows_received"],
                     "duplicate_of_batch_id": 1 if status == "duplicate_file" else None})
    return {
        "audit_batch": pl.DataFrame(rows, infer_schema_length=None, schema_overrides={
            "stored_path": pl.String, "flow_run_id": pl.String, "reason": pl.String}),
        "audit_quarantine": pl.DataFrame(quarantine, infer_schema_length=None,
                                         schema_overrides={"column_name": pl.String}),
        "audit_validation_result": pl.DataFrame(results, infer_schema_length=None),
    }


def synthetic_responses(n_clients: int = 900, seed: int = 7, months: int = 24
                        ) -> tuple[pl.DataFrame, dict[int, tuple[str, dt.date]]]:
    """Item responses of ``n_clients`` clients over three clinics, and their batches."""
    parts, batches, bid = [], {}, 1
    for i, (clinic, (_, _, share)) in enumerate(CLINICS.items()):
        ids = list(range(bid, bid + months))
        for j, b in enumerate(ids):
            batches[b] = (clinic, START + dt.timedelta(days=30 * (j + 1)))
        bid += months
        parts.append(clinic_responses(clinic, max(int(n_clients * share), 5), seed + i, ids))
    return pl.concat(parts), batches


def administrations(responses: pl.DataFrame) -> int:
    """Questionnaire administrations (one client, session and instrument)."""
    return responses.select(pl.struct("clinic_id", "client_key", "session_date",
                                      "session_number", "instrument").n_unique()).item()


def build_snapshot_marts(settings: Settings, n_clients: int = 900, seed: int = 7,
                         months: int = 24) -> dict[str, pl.DataFrame]:
    """Every mart plus the audit tables for ``n_clients`` clients over three clinics."""
    responses, batches = synthetic_responses(n_clients, seed, months)
    params = MartParams(gap_days=settings.episode_gap_days, open_days=settings.episode_open_days,
                        min_cell_size=settings.min_cell_size, as_of=AS_OF)
    marts = build_marts(responses, load_instruments(settings), params)
    marts.update(audit_tables(responses, batches))
    return marts


def publish_synthetic(
    settings: Settings, n_clients: int = 900, seed: int = 7,
) -> published.Snapshot:
    """Build and publish a synthetic snapshot into ``settings``' TANDEM_HOME."""
    responses, batches = synthetic_responses(n_clients, seed)
    params = MartParams(gap_days=settings.episode_gap_days, open_days=settings.episode_open_days,
                        min_cell_size=settings.min_cell_size, as_of=AS_OF)
    marts = build_marts(responses, load_instruments(settings), params)
    marts.update(audit_tables(responses, batches))
    return published.publish(marts, settings, meta={
        "as_of": AS_OF.isoformat(), "synthetic": True,
        "administrations": administrations(responses), "responses": responses.height})
