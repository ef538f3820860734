"""Excel workbooks (``.xlsx``) from small practices: one sheet per period, typed by hand.

The contract's ``mapping`` lists, for every field and instrument item, the header
``synonyms`` people type; headers match after strip, casefold and collapsing inner spaces
(docs/formats.md). Every sheet whose name fits ``sheets.name_format`` must carry every
field and item column, else the workbook fails as a whole (a renamed header is schema
drift: loading the other sheets would half-load the file). Other sheets (notes, lookups)
are ignored and named in the batch's notes. A row is a session; an instrument counts as
administered in it when any of its item cells holds a value, and then each of its items
is a canonical row (a blank one a missing answer). ``source_row`` is the sheet row (header
= 1) and ``source_ref`` names it as ``Sheet!row``.

Date cells come from fastexcel as ``YYYY-MM-DD 00:00:00`` and are rewritten in the
contract's ``date_format``; a date typed as text is kept as typed and parsed with it.

Before fastexcel (calamine, native code) sees the bytes, :mod:`.xlsx_guard` checks the
package: zip sizes and packing ratio, parts, and each sheet's true used range (calamine
allocates rows x columns for it: one stray cell at XFD1048576 asks for 512 GiB and aborts
the process). A workbook it refuses fails with the guard's sentence for the clinic.
Errors from fastexcel are named by type only: their text may quote cells.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from tandem.core.contracts import ClinicContract
from tandem.pipeline.sources import SourceError, normalise_header
from tandem.pipeline.sources.xlsx_guard import WorkbookRefused, XlsxLimits, check_xlsx
from transforms.staging import CANONICAL_COLUMNS

# What a practice's workbook may be (see xlsx_guard.XlsxLimits for every limit).
LIMITS = XlsxLimits()

FIELDS = ("client_id", "therapist_id", "session_date", "session_number")
_DATE_CELL = r"^\d{4}-\d{2}-\d{2}[ T]00:00:00(\.0+)?$"


def _sheet_matches(name: str, fmt: str | None) -> bool:
    if not fmt:
        return True
    try:
        dt.datetime.strptime(name.strip(), fmt)
    except ValueError:
        return False
    return True


def read(data: bytes, contract: ClinicContract,
         source_name: str) -> tuple[pl.DataFrame, list[str]]:
    """Canonical rows of every period sheet."""
    import fastexcel

    try:
        check_xlsx(data, LIMITS, source_name=source_name)
    except WorkbookRefused as exc:
        raise SourceError(exc.reason) from None
    mp = contract.mapping
    try:
        book = fastexcel.read_excel(data)
        names = book.sheet_names
    except BaseException as exc:  # noqa: BLE001 - a pyo3 PanicException is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        # fastexcel's message may quote the workbook: its type is all a reason names
        raise SourceError(
            f"{source_name} is not a readable Excel workbook ({type(exc).__name__}); the "
            f"file may be truncated or corrupt: open it in Excel and save it again"
        ) from None
    header_row = int(mp.get("header_row", 1))
    name_format = (mp.get("sheets") or {}).get("name_format")
    wanted: dict[str, tuple[str, str | None]] = {}  # normalised header -> (target, item)
    for key in FIELDS:
        for syn in (mp.get("columns") or {}).get(key, [key]):
            wanted[normalise_header(syn)] = (key, None)
    instruments = {c: (mp.get("instruments") or {}).get(c) for c in contract.instruments}
    for code, entry in instruments.items():
        for number, synonyms in ((entry or {}).get("items") or {}).items():
            for syn in synonyms if isinstance(synonyms, list) else [synonyms]:
                wanted[normalise_header(syn)] = (code, str(int(number)))
    needed = {(k, None) for k in FIELDS} | {
        (code, str(int(n)))
        for code, e in instruments.items() for n in ((e or {}).get("items") or {})
    }

    parts: list[pl.DataFrame] = []
    skipped: list[str] = []
    for name in names:
        if not _sheet_matches(name, name_format):
            skipped.append(name)
            continue
        try:
            sheet = book.load_sheet(name, header_row=None, dtypes="string").to_polars()
        except BaseException as exc:  # noqa: BLE001 - a pyo3 PanicException is a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise SourceError(f"{source_name}: sheet {name!r} cannot be read "
                              f"({type(exc).__name__}); open the workbook in Excel and save "
                              f"it again") from None
        if sheet.height < header_row:
            continue  # an empty month
        headers = [sheet[c][header_row - 1] for c in sheet.columns]
        found: dict[tuple[str, str | None], str] = {}
        for col, head in zip(sheet.columns, headers, strict=True):
            target = wanted.get(normalise_header(head))
            if target is not None and target not in found:
                found[target] = col
        missing = needed - found.keys()
        if missing:
            what = sorted(f"{a} item {b}" if b else a for a, b in missing)
            # Quote the row's other cells only when it is a header row: one that holds none
            # of the known headers may be a record (a client id among its cells).
            unknown = [h for h in headers if h and normalise_header(h) not in wanted] \
                if found else []
            unknown = [h[:40] for h in unknown[:6]]
            raise SourceError(
                f"{source_name}: sheet {name!r} has no column the contract knows for "
                f"{', '.join(what[:6])}"
                + (f" (unrecognised headers: {unknown})" if unknown else "")
                + ("" if found else f" (row {header_row}, where the contract expects the "
                                    f"headers, holds none of them)")
                + "; add the header to the contract's synonyms or correct the sheet"
            )
        body = sheet.slice(header_row).with_row_index("source_row", offset=header_row + 1)
        body = body.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in found.values()))
        if body.height == 0:
            continue
        date = pl.col(found[("session_date", None)])
        base = {
            "clinic_id": pl.lit(contract.clinic_id),
            "client_id": pl.col(found[("client_id", None)]),
            "therapist_id": pl.col(found[("therapist_id", None)]),
            "session_date": pl.when(date.str.contains(_DATE_CELL))
            .then(date.str.slice(0, 10).str.strptime(pl.Date, "%Y-%m-%d", strict=False)
                  .dt.strftime(contract.date_format))
            .otherwise(date),
            "session_number": _whole(pl.col(found[("session_number", None)])),
        }
        for code, entry in instruments.items():
            cols = [found[(code, str(int(n)))] for n in ((entry or {}).get("items") or {})]
            given = body.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cols))
            for n in (entry or {}).get("items") or {}:
                parts.append(given.select(
                    **base,
                    instrument=pl.lit(code),
                    item=pl.lit(str(int(n))),
                    score=pl.col(found[(code, str(int(n)))]),
                    source_row=pl.col("source_row").cast(pl.Int64),
                    source_ref=pl.lit(f"{name}!") + pl.col("source_row").cast(pl.String),
                ))
    notes = [f"ignored sheet{'s' if len(skipped) > 1 else ''} {skipped} (not a period sheet)"] \
        if skipped else []
    if not parts:
        schema = {**dict.fromkeys(CANONICAL_COLUMNS, pl.String), "source_row": pl.Int64,
                  "source_ref": pl.String}
        return pl.DataFrame(schema=schema), notes
    frame = pl.concat(parts).select(*CANONICAL_COLUMNS, "source_row", "source_ref")
    return frame, notes


def _whole(col: pl.Expr) -> pl.Expr:
    """A number cell holding a whole number reads as ``3`` or ``3.0``: keep ``3``."""
    return pl.when(col.str.contains(r"^\s*-?\d+\.0+\s*$")).then(
        col.str.strip_chars().str.replace(r"\.0+$", "")).otherwise(col)
