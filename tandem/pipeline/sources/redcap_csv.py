"""REDCap-style flat CSV export: one row per record and session event (docs/formats.md).

The contract's ``mapping`` names every field: ``record_id`` (the client), ``event_name``
and ``session_event`` (rows of other events, e.g. a baseline arm, hold no sessions),
``session_number`` (the repeat instance), ``session_date``, ``therapist_id``, and per
instrument its ``items`` (item number -> field) and ``complete`` status field. A form
counts as administered when its status is one of ``complete_values`` above "incomplete"
(REDCap writes 0 for a form never opened, and checkboxes export 0 even then), so an
unfilled form is not a row, while a blank item of a filled form is a missing answer.
"""

from __future__ import annotations

import io

import polars as pl

from tandem.core.contracts import ClinicContract
from tandem.pipeline.sources import (
    SourceError,
    csv_problem,
    decode,
    read_csv_header,
    require_complete_text,
    shown_headers,
)
from transforms.staging import CANONICAL_COLUMNS


def _filled_statuses(mapping: dict) -> list[str]:
    values = mapping.get("complete_values") or {"incomplete": 0, "unverified": 1, "complete": 2}
    floor = values.get("incomplete", 0)
    return [str(v) for v in values.values() if v != floor]


def read(data: bytes, contract: ClinicContract, source_name: str) -> pl.DataFrame:
    """One canonical row per item of each filled form; ``source_row`` = CSV line (header 1)."""
    mp = contract.mapping
    text = decode(data, contract.encoding, source_name)
    require_complete_text(text, source_name)
    header = [h.strip() for h in read_csv_header(text, source_name)]
    instruments = {code: mp["instruments"][code] for code in contract.instruments
                   if code in mp.get("instruments", {})}
    needed = [mp["record_id"], mp["session_number"], mp["session_date"], mp["therapist_id"]]
    for entry in instruments.values():
        needed += [*entry["items"].values(), entry["complete"]]
    missing = [c for c in needed if c not in header]
    if missing:
        known = {*needed, *(v for v in mp.values() if isinstance(v, str))}
        extra = shown_headers(header, known, limit=8)
        if extra is None:  # the first line is a record, not a header: quote nothing of it
            raise SourceError(
                f"{source_name} has no REDCap header: line 1 holds none of the field names "
                f"the clinic's contract expects (e.g. {needed[:3]}); the export may have "
                f"left the header out")
        raise SourceError(
            f"{source_name} does not match the clinic's REDCap contract: missing fields "
            f"{missing[:8]}" + (f", unexpected {extra}" if extra else "")
        )
    try:
        frame = pl.read_csv(io.StringIO(text), has_header=True, infer_schema=False,
                            new_columns=header, truncate_ragged_lines=False)
    except pl.exceptions.PolarsError:
        # Polars' message quotes the cells it choked on: say where instead.
        raise SourceError(f"{source_name} is not a readable CSV: "
                          f"{csv_problem(text, len(header))}") from None
    frame = frame.with_row_index("source_row", offset=2)
    event, session_event = mp.get("event_name"), mp.get("session_event")
    if event and session_event and event in frame.columns:
        frame = frame.filter(pl.col(event).str.strip_chars() == session_event)
    filled = _filled_statuses(mp)
    base = {
        "clinic_id": pl.lit(contract.clinic_id),
        "client_id": pl.col(mp["record_id"]),
        "therapist_id": pl.col(mp["therapist_id"]),
        "session_date": pl.col(mp["session_date"]),
        "session_number": pl.col(mp["session_number"]),
    }
    parts = []
    for code, entry in instruments.items():
        done = frame.filter(pl.col(entry["complete"]).str.strip_chars().is_in(filled))
        for number, field in entry["items"].items():
            parts.append(done.select(
                **base,
                instrument=pl.lit(code),
                item=pl.lit(str(int(number))),
                score=pl.col(field),
                source_row=pl.col("source_row").cast(pl.Int64),
            ))
    if not parts:
        return pl.DataFrame(schema={**dict.fromkeys(CANONICAL_COLUMNS, pl.String),
                                    "source_row": pl.Int64})
    return pl.concat(parts).select(*CANONICAL_COLUMNS, "source_row").sort(
        "source_row", maintain_order=True)
