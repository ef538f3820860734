"""The canonical long CSV (docs/formats.md): one row per answered item."""

from __future__ import annotations

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


def read(data: bytes, contract: ClinicContract, source_name: str) -> pl.DataFrame:
    """Every record as text; ``source_row`` is the record's line number (header = line 1)."""
    text = decode(data, contract.encoding, source_name)
    require_complete_text(text, source_name)
    header = [h.strip().lower() for h in read_csv_header(text, source_name)]
    # Polars reads UTF-8 bytes: hand it the file's own bytes (less its BOM) when they are
    # UTF-8, rather than copies of the decoded text.
    if contract.encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        payload = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    else:
        payload = text.encode("utf-8")
    del text
    missing = [c for c in CANONICAL_COLUMNS if c not in header]
    if missing:
        extra = shown_headers(header, set(CANONICAL_COLUMNS))
        if extra is None:  # the first line is a record, not a header: quote nothing of it
            raise SourceError(
                f"{source_name} has no canonical CSV header: line 1 holds none of the "
                f"expected column names ({','.join(CANONICAL_COLUMNS)}); the export may "
                f"have left the header out")
        raise SourceError(
            f"{source_name} does not match the canonical CSV header: missing {missing}"
            + (f", unexpected {extra}" if extra else "")
            + f"; expected {','.join(CANONICAL_COLUMNS)}"
        )
    try:
        frame = pl.read_csv(
            payload,
            has_header=True,
            infer_schema=False,  # every column as text: nothing is lost to a failed cast
            new_columns=header,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.PolarsError:
        # Polars' message quotes the cells it choked on: say where instead.
        where = csv_problem(decode(data, contract.encoding, source_name), len(header))
        raise SourceError(f"{source_name} is not a readable CSV: {where}") from None
    return frame.select(CANONICAL_COLUMNS).with_row_index("source_row", offset=2).with_columns(
        pl.col("source_row").cast(pl.Int64)
    )
