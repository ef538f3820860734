"""The alerts read the published audit (a DuckLake publication, no file of its own)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from tandem.core import published


def test_usual_quarantine_rate_and_silence_read_the_published_audit(tandem_home):
    from flows.alerts import silent_clinics, usual_quarantine_rate

    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    published.publish({"audit_batch": pl.DataFrame({
        "batch_id": [1, 2, 3], "clinic_id": ["northside"] * 3, "status": ["loaded"] * 3,
        "rows_received": [100, 100, 100], "rows_quarantined": [2, 4, 50],
        "received_at": [now - dt.timedelta(days=1)] * 3})}, tandem_home, meta={})
    assert usual_quarantine_rate(tandem_home, "northside", 3) == 0.03
    assert usual_quarantine_rate(tandem_home, "elsewhere", 3) == 0.0
    assert silent_clinics(tandem_home, now) == []  # northside sent a file yesterday
