"""The mess real exports have, injected at known places so the pipeline can be scored.

Row faults are applied to a chunk's records (a table of strings, one record per output
row or line) before they are written; file faults are decided when a file is created and
finished after the last chunk. Every fault becomes a manifest entry: file, row, kind,
expected outcome, detail. A quarantine fault must be detectable from its row alone plus
the clinic contract (roster, started_on, instrument ranges) and the run's ``as_of`` date.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tandem.synth.clinics import N_ITEMS, TENTHS, UNKNOWN_THERAPISTS
from tandem.synth.options import FaultRates

OUTCOMES = {
    "out_of_range": "quarantine",
    "missing_item": "quarantine",
    "impossible_date": "quarantine",
    "future_date": "quarantine",
    "unknown_therapist": "quarantine",
    "conflicting_duplicate": "quarantine",
    "duplicate_row": "duplicate_skipped",
    "whitespace": "normalised",
    "bom": "normalised",
    "latin1_encoding": "normalised",
    "duplicate_file": "file_duplicate",
    "corrected_file": "file_replaced",
    "truncated_file": "file_failed",
    "schema_drift": "file_failed",
    # date_swap: "quarantine" when the swapped date is invalid or outside the clinic's
    # window, else "undetectable"
}
# Faults that change a row in place, which a corrected re-send puts right.
IN_PLACE = frozenset({"out_of_range", "missing_item", "impossible_date", "future_date",
                      "unknown_therapist", "date_swap"})


@dataclass
class Fault:
    file: str  # relative to <out>/files
    row: int | str | None
    kind: str
    expected_outcome: str
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"file": self.file, "row": self.row, "kind": self.kind,
                "expected_outcome": self.expected_outcome, "detail": self.detail}


@dataclass(frozen=True)
class ItemCell:
    column: str
    instrument: str
    item: int


@dataclass
class TableAdapter:
    """Where a format keeps the fields a fault touches, and how it spells a bad date."""

    date_column: str
    therapist_column: str
    text_columns: tuple[str, ...]
    item_cells: Callable[[dict], list[ItemCell]]
    bad_date: Callable[[int, int, int], str]  # an invalid date as the file would hold it
    kinds: tuple[str, ...] = FaultRates.ROW_KINDS


def iso(y: int, m: int, d: int) -> str:
    return f"{y:04d}-{m:02d}-{d:02d}"


def _valid(y: int, m: int, d: int) -> bool:
    return 1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]


def format_score(instrument: str, value: float) -> str:
    if instrument in TENTHS:
        return f"{value:.1f}"
    return str(int(value))


def out_of_range_value(instrument: str, rng: np.random.Generator) -> str:
    if instrument in TENTHS:
        return str(rng.choice(["10.5", "11.0", "-1.0", "12.5", "55"]))
    lo, hi = ITEM_RANGE[instrument]
    return str(int(rng.choice([hi + 1, hi + 2, lo - 1])))


def other_value(instrument: str, current: str, rng: np.random.Generator) -> str:
    """A different value within the item's range (for a conflicting duplicate)."""
    lo, hi = ITEM_RANGE[instrument]
    if instrument in TENTHS:
        cur = round(float(current) * 10)
        choices = [v for v in range(int(lo * 10), int(hi * 10) + 1, 5) if v != cur]
        return format_score(instrument, int(rng.choice(choices)) / 10)
    choices = [v for v in range(int(lo), int(hi) + 1) if str(v) != current]
    return str(int(rng.choice(choices)))


ITEM_RANGE = {"ORS": (0, 10), "SRS": (0, 10), "PHQ9": (0, 3), "GAD7": (0, 3),
              "WAISR": (1, 5), "COLLABORATE": (0, 9), "PRACTICE": (0, 1)}
assert set(ITEM_RANGE) == set(N_ITEMS)


def pick_row_kinds(rng: np.random.Generator, n: int, rates: FaultRates,
                   allowed: tuple[str, ...]) -> np.ndarray:
    """Index into ``allowed`` of each record's fault, or -1; at most one per record."""
    probs = np.array([getattr(rates, k) for k in allowed])
    u = rng.random(n)
    edges = np.cumsum(probs)
    kinds = np.searchsorted(edges, u, side="right")
    return np.where(kinds < len(allowed), kinds, -1)


@dataclass
class RowFault:
    index: int  # final position in the chunk's table (after inserted rows)
    kind: str
    outcome: str
    detail: dict


@dataclass
class FaultedTable:
    table: pl.DataFrame
    faults: list[RowFault]
    originals: dict[int, dict]  # final position -> the row before an in-place fault


def apply_row_faults(
    table: pl.DataFrame, kinds: np.ndarray, allowed: tuple[str, ...], adapter: TableAdapter,
    rng: np.random.Generator, window: tuple[dt.date, dt.date],
) -> FaultedTable:
    """Apply the chosen faults; duplicates are inserted right after their original row."""
    started_on, as_of = window
    edits: dict[str, tuple[list[int], list[str | None]]] = {}
    inserts: list[tuple[int, dict]] = []
    pending: list[tuple[int, bool, str, str, dict]] = []  # (orig idx, inserted?, ...)
    originals: dict[int, dict] = {}

    def edit(i: int, col: str, value: str | None) -> None:
        idx, vals = edits.setdefault(col, ([], []))
        idx.append(i)
        vals.append(value)

    for i in np.flatnonzero(kinds >= 0):
        i = int(i)
        kind = allowed[kinds[i]]
        row = table.row(i, named=True)
        detail: dict = {}
        outcome = OUTCOMES.get(kind, "")
        if kind in ("out_of_range", "missing_item", "conflicting_duplicate"):
            cells = adapter.item_cells(row)
            if kind == "missing_item":
                # a checkbox is always 0 or 1: it cannot be left blank
                cells = [c for c in cells if not c.column.count("___")]
            if not cells:
                continue
            cell = cells[int(rng.integers(len(cells)))]
            detail = {"column": cell.column, "instrument": cell.instrument, "item": cell.item,
                      "original": row[cell.column]}
            if kind == "out_of_range":
                value = out_of_range_value(cell.instrument, rng)
                edit(i, cell.column, value)
                detail["value"] = value
            elif kind == "missing_item":
                edit(i, cell.column, None)
                detail["value"] = None
            else:
                value = other_value(cell.instrument, row[cell.column], rng)
                new = dict(row)
                new[cell.column] = value
                inserts.append((i, new))
                detail["value"] = value
                pending.append((i, False, kind, outcome, {**detail, "role": "first"}))
                pending.append((i, True, kind, outcome, {**detail, "role": "second"}))
                continue
        elif kind in ("impossible_date", "future_date", "date_swap"):
            y, mo, d = (int(p) for p in str(row[adapter.date_column]).split("-"))
            if kind == "impossible_date":
                ny, nm, nd = (y, mo, 31) if mo in (4, 6, 9, 11) else (y, 2, 30)
            elif kind == "future_date":
                ny, nm, nd = y + 10, mo, (28 if (mo, d) == (2, 29) else d)
            else:
                if d == mo:
                    continue  # swapping changes nothing
                ny, nm, nd = y, d, mo
            if _valid(ny, nm, nd):
                value = iso(ny, nm, nd)
                if kind == "date_swap":
                    swapped = dt.date(ny, nm, nd)
                    if swapped >= as_of:
                        # after as_of yet maybe before the reader's today: neither surely
                        # detectable nor surely not, so not used
                        continue
                    inside = started_on <= swapped
                    outcome = "undetectable" if inside else "quarantine"
                    detail["reason"] = "plausible date" if inside else "before started_on"
            else:
                value = adapter.bad_date(ny, nm, nd)
                if kind == "date_swap":
                    outcome = "quarantine"
                    detail["reason"] = "invalid date"
            edit(i, adapter.date_column, value)
            detail.update(column=adapter.date_column, original=row[adapter.date_column],
                          value=value)
        elif kind == "unknown_therapist":
            value = str(rng.choice(UNKNOWN_THERAPISTS))
            edit(i, adapter.therapist_column, value)
            detail = {"column": adapter.therapist_column,
                      "original": row[adapter.therapist_column], "value": value}
        elif kind == "whitespace":
            col = adapter.text_columns[int(rng.integers(len(adapter.text_columns)))]
            if row[col] is None:
                continue
            pad = str(rng.choice([" ", "  ", "\t"]))
            where = int(rng.integers(3))
            value = (pad if where != 1 else "") + str(row[col]) + (pad if where != 0 else "")
            edit(i, col, value)
            detail = {"column": col, "original": row[col], "value": value}
        elif kind == "duplicate_row":
            inserts.append((i, dict(row)))
            pending.append((i, True, kind, outcome, {"duplicate_of": "previous row"}))
            continue
        if kind in IN_PLACE:
            originals[i] = row
        pending.append((i, False, kind, outcome, detail))

    for col, (idx, vals) in edits.items():
        series = table[col]
        if series.dtype != pl.String:
            series = series.cast(pl.String)
        table = table.with_columns(series.scatter(idx, pl.Series(vals, dtype=pl.String)))

    # Final positions after inserting each extra row right after its original.
    ins_at = np.array(sorted(i for i, _ in inserts), dtype=np.int64)

    def final(i: int, inserted: bool) -> int:
        before = int(np.searchsorted(ins_at, i, side="left"))
        return i + before + (1 if inserted else 0)

    if inserts:
        extra = pl.DataFrame([r for _, r in sorted(inserts, key=lambda t: t[0])],
                             schema=table.schema, orient="row")
        pos = np.arange(table.height, dtype=np.int64) * 2
        table = pl.concat([
            table.with_columns(pl.Series("_pos", pos)),
            extra.with_columns(pl.Series("_pos", ins_at * 2 + 1)),
        ]).sort("_pos").drop("_pos")
    faults = [RowFault(final(i, ins), kind, outcome, detail)
              for i, ins, kind, outcome, detail in pending]
    return FaultedTable(table, faults, {final(i, False): r for i, r in originals.items()})


def file_fault_kinds(fmt: str) -> tuple[str, ...]:
    """The file faults a format can have (a BOM only on CSV; no drift in FHIR)."""
    kinds = ["bom", "duplicate_file", "corrected_file", "truncated_file", "schema_drift"]
    if fmt in ("fhir_ndjson", "excel"):
        kinds.remove("bom")
    if fmt == "fhir_ndjson":
        kinds.remove("schema_drift")
    if fmt == "excel":
        kinds.remove("corrected_file")
    return tuple(kinds)


def pick_file_fault(rng: np.random.Generator, rates: FaultRates, fmt: str) -> str | None:
    kinds = file_fault_kinds(fmt)
    probs = np.array([getattr(rates, k) for k in kinds])
    j = int(np.searchsorted(np.cumsum(probs), rng.random(), side="right"))
    return kinds[j] if j < len(kinds) else None
