"""Failure reasons end up in the warehouse, snapshots and logs: they must not quote raw ids."""

from __future__ import annotations

import pytest

from flows.sources import SourceError, reader_for
from tandem.contracts import ClinicContract

CONTRACT = ClinicContract(clinic_id="northside", name="N", format="canonical_csv",
                          started_on="2024-01-01", instruments=["ORS"], therapists=["T01"])
HEADER = b"clinic_id,client_id,therapist_id,session_date,session_number,instrument,item,score\n"


@pytest.mark.parametrize("tail", [b"northside,NS-004211,T01,2026-01-05,1,OR",
                                  b"northside,NS-004211", b"northside,NS-004211,T01,20"])
def test_a_truncated_file_reason_does_not_quote_the_client_id(tail):
    data = HEADER + b"northside,NS-000001,T01,2026-01-05,1,ORS,1,4\n" + tail
    with pytest.raises(SourceError) as exc:
        reader_for("canonical_csv")(data, CONTRACT, "x.csv")
    assert "NS-004211" not in str(exc.value), str(exc.value)
