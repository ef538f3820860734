"""Source readers: one per clinic export format, each returning the canonical rows as text.

A reader takes the file's bytes and the clinic's contract and returns a Polars frame with
the canonical columns (``transforms.staging.CANONICAL_COLUMNS``) as text plus
``source_row`` (where in the file the value came from) and optionally ``source_ref`` and
``reader_issue`` (see :mod:`transforms.staging`). It may instead return ``(frame, notes)``,
where the notes (e.g. "ignored 12 Patient resources") end up in the batch's reason. A
file that cannot be read at all raises :class:`SourceError` with a reason a person can act
on; row-level problems are left for the data contract to catch, so they are quarantined
rather than lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from tandem.contracts import ClinicContract


class SourceError(Exception):
    """The file as a whole cannot be read under its contract (the batch fails, kept for re-run)."""


Reader = Callable[[bytes, ClinicContract, str], "pl.DataFrame | tuple[pl.DataFrame, list[str]]"]


def decode(data: bytes, encoding: str, source_name: str) -> str:
    """Text of a file in its contract's encoding; a UTF-8 byte-order mark is dropped."""
    enc = encoding.lower().replace("_", "-")
    if enc in ("utf-8", "utf8"):
        enc = "utf-8-sig"
    try:
        return data.decode(enc)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{source_name} is not valid {encoding} (byte {exc.start}:"
            f" {data[exc.start:exc.start + 4]!r});"
            f" check the encoding in the clinic's contract"
        ) from exc
    except LookupError as exc:
        raise SourceError(f"the contract names an unknown encoding {encoding!r}") from exc


def require_complete_text(text: str, source_name: str) -> None:
    """A text export ends with a line break; one that stops mid-record was cut in transfer.

    Loading the records before the cut would half-load the file, so it fails as a whole
    and is kept for a re-run once the clinic re-sends it.
    """
    if not text.strip():
        raise SourceError(f"{source_name} is empty")
    if not text.endswith(("\n", "\r")):
        # Say where, never what: the cut record holds a client id.
        line = text.count("\n") + 1
        raise SourceError(
            f"{source_name} ends in the middle of a record (line {line} has no line break): "
            f"the file looks truncated; ask the clinic to send it again"
        )


_SPACES = re.compile(r"\s+")


def normalise_header(text: str | None) -> str:
    """Hand-typed headers compare equal after strip, casefold and collapsing inner spaces."""
    return _SPACES.sub(" ", (text or "").strip()).casefold()


def split_notes(
    result: pl.DataFrame | tuple[pl.DataFrame, list[str]],
) -> tuple[pl.DataFrame, list[str]]:
    """A reader's frame and notes, whichever it returned."""
    if isinstance(result, tuple):
        return result
    return result, []


def reader_for(fmt: str) -> Reader:
    from flows.sources import canonical_csv, excel, fhir_ndjson, redcap_csv

    readers: dict[str, Reader] = {
        "canonical_csv": canonical_csv.read,
        "redcap_csv": redcap_csv.read,
        "fhir_ndjson": fhir_ndjson.read,
        "excel": excel.read,
    }
    try:
        return readers[fmt]
    except KeyError as exc:
        raise SourceError(f"no reader for the format {fmt!r} yet") from exc


def read_csv_header(text: str, source_name: str) -> list[str]:
    """The first record of a CSV text as a list of names; a broken header is a SourceError."""
    import csv
    import io

    end = text.find("\n")
    try:
        return next(csv.reader(io.StringIO(text if end < 0 else text[: end + 1], newline="")))
    except (csv.Error, StopIteration) as exc:
        raise SourceError(f"{source_name}: the header line is not readable CSV ({exc})") from exc
