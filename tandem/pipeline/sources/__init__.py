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

from tandem.core.contracts import ClinicContract


class SourceError(Exception):
    """The file as a whole cannot be read under its contract (the batch fails, kept for re-run)."""


Reader = Callable[[bytes, ClinicContract, str], "pl.DataFrame | tuple[pl.DataFrame, list[str]]"]


# The utf-8 codec's reasons are fixed phrases; anything else is summarised.
_DECODE_REASONS = {
    "invalid start byte": "a byte that cannot start a character",
    "invalid continuation byte": "a character cut short (an invalid continuation byte)",
    "unexpected end of data": "a character cut short at the end of the file",
    "illegal encoding": "an invalid byte sequence",
    "truncated data": "a character cut short",
}


def decode(data: bytes, encoding: str, source_name: str) -> str:
    """Text of a file in its contract's encoding; a UTF-8 byte-order mark is dropped.

    A byte that does not decode fails the file with its position (byte, line, column),
    never the bytes themselves: they may be part of a client id. The error is raised
    outside the ``except`` block, so no chained ``UnicodeDecodeError`` (whose ``object``
    is the whole file) travels with it into a log."""
    import codecs

    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        codec = None
    if codec is None:
        raise SourceError(
            f"the contract names an unknown encoding {encoding[:40]!r}; correct it in the "
            f"clinic's contract")
    try:
        return data.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as exc:
        message = describe_decode_error(exc.start, exc.reason, data, encoding, codec,
                                        source_name)
    raise SourceError(message)


def describe_decode_error(pos: int, why: str, data: bytes, encoding: str, codec: str,
                          source_name: str) -> str:
    """Where a decode failed (1-based byte, line and column) and what kind of byte it was."""
    line = data.count(b"\n", 0, pos) + 1
    column = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
    what = _DECODE_REASONS.get(why, "a byte sequence that is not valid in this encoding")
    hint = ""
    if codec == "utf-8":
        try:
            data[max(0, pos - 3):pos + 4].decode("cp1252")
            hint = (" (the file may be in Windows-1252/Latin-1: if the clinic's export says "
                    "so, set encoding: cp1252 in its contract)")
        except UnicodeDecodeError:
            pass
    return (f"{source_name} is not valid {encoding}: byte {pos + 1:,} (line {line:,}, "
            f"column {column:,}) is {what}{hint}; ask the clinic to export as {encoding} "
            f"or correct the encoding in its contract")


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
    from tandem.pipeline.sources import canonical_csv, excel, fhir_ndjson, redcap_csv

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
    except (csv.Error, StopIteration):
        pass
    raise SourceError(f"{source_name}: the header line is not readable CSV (an unclosed "
                      f"quote or a NUL byte in line 1); check that the file is a CSV export")


def shown_headers(found: list[str], expected: set[str], limit: int = 6) -> list[str] | None:
    """Header names that may be quoted in a reason, or None when the first line looks like a
    record rather than a header (it holds none of the expected names: quoting it could
    quote a client id). Each name is cut to 40 characters, control characters replaced."""
    if not any(h in expected for h in found):
        return None
    return [_CONTROL.sub("?", h)[:40] + ("…" if len(h) > 40 else "")
            for h in found if h not in expected][:limit]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def csv_problem(text: str, n_columns: int) -> str:
    """Where a CSV that Polars refused first goes wrong, by line number only.

    Polars' own message quotes the offending cells, so it never reaches a reason; this
    re-reads the text with the standard csv module (only when Polars already failed) to
    name the first record whose field count differs from the header's, or the line where
    the CSV syntax breaks."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for record in reader:
            if reader.line_num > 1 and record and len(record) != n_columns:
                return (f"the record ending on line {reader.line_num:,} has {len(record)} "
                        f"fields where the header has {n_columns}")
    except csv.Error:
        return f"the CSV syntax breaks near line {reader.line_num + 1:,} (a quote not closed?)"
    return "a record does not fit the header (an unclosed quote or a stray delimiter)"


def cut_text(text: str, max_chars: int = 2_000) -> str:
    """``text`` cut to ``max_chars`` characters, saying how long it was."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}…[cut: {len(text):,} characters]"
