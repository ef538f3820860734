"""Failure reasons end up in the warehouse, snapshots and logs: they must not quote raw ids."""

from __future__ import annotations

import pytest

from tandem.core.contracts import ClinicContract
from tandem.pipeline.sources import SourceError, reader_for

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


def test_a_bad_byte_is_named_by_position_never_quoted():
    """Before: ``x.csv is not valid utf-8 (byte 95: b'\\xeb-77')``, a fragment of a client id."""
    data = HEADER + b"northside,NS-\xeb-7781,T01,2026-01-05,1,ORS,1,4\n"
    with pytest.raises(SourceError) as exc:
        reader_for("canonical_csv")(data, CONTRACT, "x.csv")
    reason = str(exc.value)
    assert f"byte {len(HEADER) + 14:,} (line 2, column 14)" in reason, reason
    assert "7781" not in reason and "\\x" not in reason and "b'" not in reason
    assert exc.value.__cause__ is None and exc.value.__context__ is None  # no file in .object


def test_a_csv_polars_refuses_is_named_by_line_never_quoted():
    """Polars' own message quotes the cells it choked on (``could not parse "Jane Doe``)."""
    data = HEADER + b"northside,NS-000001,T01,2026-01-05,1,ORS,1,4\n" \
        + b'northside,NS-004211,"Jane Doe, 1980,T01,2026-01-05,1,ORS,1,4\n' \
        + b"northside,NS-000002,T01,2026-01-05,1,ORS,1,4\n"
    with pytest.raises(SourceError) as exc:
        reader_for("canonical_csv")(data, CONTRACT, "x.csv")
    reason = str(exc.value)
    assert "NS-004211" not in reason and "Jane" not in reason, reason
    assert "line" in reason


def test_a_file_without_its_header_line_is_not_quoted():
    data = b"northside,NS-004211,T01,2026-01-05,1,ORS,1,4\n" * 3
    with pytest.raises(SourceError) as exc:
        reader_for("canonical_csv")(data, CONTRACT, "x.csv")
    assert "NS-004211" not in str(exc.value) and "no canonical CSV header" in str(exc.value)
