"""Staged rows for the quality floor's tests, made the way the ingest makes them."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tandem.core.contracts import ClinicContract, load_instruments
from tandem.core.settings import Settings
from tandem.pipeline.sources import reader_for, split_notes
from tests.conftest import HEADER, canonical_rows
from transforms.staging import ROW_ID, add_contract_columns, stage_rows

AS_OF = dt.date(2025, 6, 30)


def contract(clinic: str = "northside", therapists: tuple[str, ...] = ("T01", "T02")):
    return ClinicContract(clinic_id=clinic, name=clinic.title(), format="canonical_csv",
                          started_on=dt.date(2024, 1, 1), instruments=["ORS", "SRS"],
                          therapists=list(therapists))


def staged(text: str, con: ClinicContract, row_offset: int = 0) -> pl.DataFrame:
    """Read, 'pseudonymise' (client id stands in for its pseudonym), stage and add the
    instrument columns: what GX sees for one file."""
    raw, _ = split_notes(reader_for("canonical_csv")(text.encode(), con, "f.csv"))
    frame = stage_rows(raw.rename({"client_id": "client_key"}), con.date_format)
    frame = add_contract_columns(frame, load_instruments(Settings()))
    return frame.with_columns(pl.col(ROW_ID) + row_offset) if row_offset else frame


@pytest.fixture
def instruments():
    return load_instruments(Settings())


@pytest.fixture
def good_and_bad() -> str:
    """Two ORS administrations: one clean, one with an item of 11 and an unknown therapist."""
    return (HEADER
            + canonical_rows("C1", "T01", "2025-01-10", 1, "ORS", [5, 6, 7, 8])
            + canonical_rows("C2", "T09", "2025-01-11", 1, "ORS", [5, 11, 7, 8]))
