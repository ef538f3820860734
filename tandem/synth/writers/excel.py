"""An Excel workbook from a small practice: one workbook a quarter, one sheet a month.

Headers are typed by hand, so they differ from sheet to sheet within the synonyms the
contract lists (case, spacing, wording). Dates are Excel dates; a date typed as text
(the only way to hold an impossible one) uses the contract's ``date_format``. A practice
this small is held in memory and written when the clinic is complete.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import xlsxwriter

from tandem.synth.clinics import EXCEL_COLUMNS, excel_item_synonyms
from tandem.synth.faults import Fault, ItemCell, TableAdapter, apply_row_faults, pick_row_kinds
from tandem.synth.population import EPOCH, Chunk
from tandem.synth.writers.base import FAILING, ClinicWriter, FileState, iso_dates, score_strings

FIXED_CREATED = dt.datetime(2026, 1, 1)  # workbook metadata must not depend on "now"
DRIFT_HEADERS = {"client_id": "Clnt", "therapist_id": "Worker", "session_date": "Dt"}


def _bad_date(y: int, m: int, d: int) -> str:
    return f"{d:02d}/{m:02d}/{y:04d}"


class ExcelWriter(ClinicWriter):
    extension = ".xlsx"
    has_header = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tables: list[pl.DataFrame] = []
        self.item_columns = [(code, n, f"{code}_{n}")
                             for code, e in self.spec.mapping["instruments"].items()
                             for n in e["items"]]

    def adapter(self) -> TableAdapter:
        groups: dict[str, list[tuple[int, str]]] = {}
        for code, n, col in self.item_columns:
            groups.setdefault(code, []).append((n, col))

        def cells(row: dict) -> list[ItemCell]:
            out = []
            for code, cols in groups.items():
                filled = [ItemCell(col, code, n) for n, col in cols if row[col] is not None]
                out.extend(filled)
            return out

        return TableAdapter(
            date_column="session_date", therapist_column="therapist_id",
            text_columns=("client_id", "therapist_id"), item_cells=cells, bad_date=_bad_date,
        )

    def _start_file(self, st: FileState) -> None:
        pass  # written whole in finish()

    @staticmethod
    def quarter_label(d: dt.date) -> str:
        return f"{d.year}-Q{(d.month - 1) // 3 + 1}"

    def build_table(self, chunk: Chunk) -> tuple[pl.DataFrame, np.ndarray]:
        dates = [EPOCH + dt.timedelta(days=int(x)) for x in np.unique(chunk.sess_day)]
        qlab = {(d - EPOCH).days: self.quarter_label(d) for d in dates}
        slab = {(d - EPOCH).days: d.strftime("%b %Y") for d in dates}
        sess_labels = np.array([qlab[int(x)] for x in chunk.sess_day], dtype=object)
        n = chunk.n_sessions
        cols: dict[str, pl.Series] = {
            "client_id": pl.Series(chunk.client_ids[chunk.sess_client], dtype=pl.String),
            "therapist_id": pl.Series(list(self.spec.therapists)).gather(chunk.sess_therapist),
            "session_date": iso_dates(chunk.sess_day),
            "session_number": pl.Series(chunk.sess_number).cast(pl.String),
        }
        for code, n_item, col in self.item_columns:
            rows, scores = chunk.admins[code]
            cols[col] = pl.repeat(None, n, eager=True, dtype=pl.String).scatter(
                rows, score_strings(code, scores[:, n_item - 1]))
        cols["_file"] = pl.Series(sess_labels, dtype=pl.String)
        cols["_sheet"] = pl.Series([slab[int(x)] for x in chunk.sess_day], dtype=pl.String)
        cols["_day"] = pl.Series(chunk.sess_day)
        return pl.DataFrame(cols), sess_labels

    def write_table(self, table: pl.DataFrame) -> None:
        self.tables.append(table)
        for lab in table["_file"].unique().to_list():
            self.state(lab)

    def finish(self) -> list[dict]:
        if self.tables:
            table = pl.concat(self.tables).sort(["_day", "client_id", "session_number"],
                                                maintain_order=True).drop("_day")
            self.tables = []
            self._write_workbooks(table)
        return super().finish()

    def _write_workbooks(self, table: pl.DataFrame) -> None:
        labels = table["_file"].to_numpy()
        allowed = self.adapter().kinds
        kinds = pick_row_kinds(self.rng, table.height, self.options.faults, allowed)
        for lab, st in self.files.items():
            if st.fault in FAILING:
                kinds[labels == lab] = -1
        faulted = apply_row_faults(table, kinds, allowed, self.adapter(), self.rng, self.window)
        table = faulted.table
        sheets = table["_sheet"].to_numpy()
        files = table["_file"].to_numpy()
        first_in_sheet: dict[tuple[str, str], int] = {}
        for i, key in enumerate(zip(files, sheets, strict=True)):
            first_in_sheet.setdefault(key, i)
        for f in faulted.faults:
            key = (files[f.index], sheets[f.index])
            ref = f"{key[1]}!{f.index - first_in_sheet[key] + 2}"
            self.emit(Fault(self.files[key[0]].name, ref, f.kind, f.outcome, f.detail))
        for (lab,), block in table.partition_by("_file", maintain_order=True,
                                                as_dict=True).items():
            self._write_workbook(self.files[lab], block)

    def _write_workbook(self, st: FileState, block: pl.DataFrame) -> None:
        rng: np.random.Generator = st.detail["rng"]
        wb = xlsxwriter.Workbook(str(st.path), {"strings_to_numbers": False})
        wb.set_properties({"created": FIXED_CREATED, "author": self.spec.name})
        date_fmt = wb.add_format({"num_format": "dd/mm/yyyy"})
        keys = ["client_id", "therapist_id", "session_date", "session_number"]
        drift_done = False
        for (sheet,), rows in block.partition_by("_sheet", maintain_order=True,
                                                 as_dict=True).items():
            ws = wb.add_worksheet(sheet)
            headers = [self._typed(EXCEL_COLUMNS[k], rng) for k in keys]
            headers += [self._typed(excel_item_synonyms(code, n), rng)
                        for code, n, _ in self.item_columns]
            if st.fault == "schema_drift" and not drift_done:
                k = keys[int(rng.integers(3))]
                st.detail.update(sheet=sheet, renamed_from=headers[keys.index(k)],
                                 renamed_to=DRIFT_HEADERS[k])
                headers[keys.index(k)] = DRIFT_HEADERS[k]
                drift_done = True
            ws.write_row(0, 0, headers)
            cols = keys + [c for _, _, c in self.item_columns]
            for r, rec in enumerate(rows.select(cols).iter_rows(), start=1):
                for c, value in enumerate(rec):
                    if value is None:
                        continue
                    if c == 2 and _is_iso(value):
                        ws.write_datetime(r, c, dt.datetime.fromisoformat(value), date_fmt)
                    elif c >= 3 and _is_number(value):
                        ws.write_number(r, c, float(value))
                    else:
                        ws.write_string(r, c, value)
            st.records += rows.height
        wb.close()

    @staticmethod
    def _typed(synonyms: list[str], rng: np.random.Generator) -> str:
        """A header as someone typed it: one of the synonyms, in some case and spacing."""
        text = synonyms[int(rng.integers(len(synonyms)))]
        style = int(rng.integers(4))
        return (text, text.lower(), text + " ", text.upper())[style]


def _is_iso(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value == value.strip()
