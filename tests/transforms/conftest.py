"""Shared builders: the real instrument definitions and a tiny ``response`` frame maker."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import pytest

from tandem.core.contracts import Instrument, load_instruments

RESPONSE_SCHEMA = {
    "clinic_id": pl.String,
    "client_key": pl.String,
    "therapist_id": pl.String,
    "session_date": pl.Date,
    "session_number": pl.Int32,
    "instrument": pl.String,
    "item": pl.Int16,
    "score": pl.Float64,
    "batch_id": pl.Int64,
    "source_row": pl.Int64,
}


@pytest.fixture(scope="session")
def instruments() -> dict[str, Instrument]:
    return load_instruments()


def answers(
    instrument: str,
    scores: Sequence[float | None],
    *,
    clinic: str = "C1",
    client: str = "k1",
    therapist: str = "T1",
    date: dt.date = dt.date(2024, 1, 1),
    session: int = 1,
    batch: int = 1,
) -> list[dict]:
    """Rows of one administration; ``None`` means the item was not answered."""
    return [
        {
            "clinic_id": clinic, "client_key": client, "therapist_id": therapist,
            "session_date": date, "session_number": session, "instrument": instrument,
            "item": i, "score": float(s), "batch_id": batch, "source_row": i,
        }
        for i, s in enumerate(scores, start=1)
        if s is not None
    ]


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RESPONSE_SCHEMA)


def day(n: int) -> dt.date:
    """Day n after 2024-01-01 (day(0) = 2024-01-01)."""
    return dt.date(2024, 1, 1) + dt.timedelta(days=n)
