"""Which delivery of a file replaces which."""

from __future__ import annotations

import pytest

from tandem.core.files import version_key


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("northside-2026-01.csv", ("northside-2026-01.csv", 0)),
        ("northside-2026-01_corrected.csv", ("northside-2026-01.csv", 1)),
        ("northside-2026-01_corrected2.csv", ("northside-2026-01.csv", 2)),
        ("northside-2026-01_v3.csv", ("northside-2026-01.csv", 3)),
        ("Northside-2026-01_RESEND.csv", ("northside-2026-01.csv", 1)),
        ("export.ndjson", ("export.ndjson", 0)),
    ],
)
def test_version_key(name, expected):
    assert version_key(name) == expected
