"""Source readers: one per clinic export format, each returning the canonical rows as text.

A reader takes the file's bytes and the clinic's contract and returns a Polars frame with
the canonical columns (``transforms.staging.CANONICAL_COLUMNS``) as text plus
``source_row`` (where in the file the value came from). A file that cannot be read at all
raises :class:`SourceError` with a reason a person can act on; row-level problems are
left for the data contract to catch, so they are quarantined rather than lost.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from tandem.contracts import ClinicContract


class SourceError(Exception):
    """The file as a whole cannot be read under its contract (the batch fails, kept for re-run)."""


Reader = Callable[[bytes, ClinicContract, str], pl.DataFrame]


def decode(data: bytes, encoding: str, source_name: str) -> str:
    """Text of a file in its contract's encoding; a UTF-8 byte-order mark is dropped."""
    enc = encoding.lower().replace("_", "-")
    if enc in ("utf-8", "utf8"):
        enc = "utf-8-sig"
    try:
        return data.decode(enc)
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{source_name} is not valid {encoding} (byte {exc.start}: {data[exc.start:exc.start + 4]!r});"
            f" check the encoding in the clinic's contract"
        ) from exc
    except LookupError as exc:
        raise SourceError(f"the contract names an unknown encoding {encoding!r}") from exc


def reader_for(fmt: str) -> Reader:
    from flows.sources import canonical_csv

    readers: dict[str, Reader] = {"canonical_csv": canonical_csv.read}
    try:
        return readers[fmt]
    except KeyError as exc:
        raise SourceError(f"no reader for the format {fmt!r} yet") from exc
