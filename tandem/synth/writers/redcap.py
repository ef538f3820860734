"""A REDCap-style flat CSV export: one row per record and session event (a repeating event).

Layout and naming follow the clinic contract's ``mapping`` (docs/formats.md): record id,
event name, repeat instrument (blank) and instance (= session number), the session date
and therapist fields, then every form's item fields and its ``<form>_complete`` status.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tandem.synth.clinics import redcap_columns
from tandem.synth.faults import ItemCell, TableAdapter, iso
from tandem.synth.population import Chunk
from tandem.synth.writers.base import (
    ClinicWriter,
    FileState,
    iso_dates,
    period_label,
    period_start,
    score_strings,
)


class RedcapWriter(ClinicWriter):
    extension = ".csv"

    def adapter(self) -> TableAdapter:
        mp = self.spec.mapping
        forms = [(code, e["complete"], e["items"]) for code, e in mp["instruments"].items()]

        def cells(row: dict) -> list[ItemCell]:
            out = []
            for code, complete, items in forms:
                if row[complete] in ("1", "2"):
                    out.extend(ItemCell(col, code, n) for n, col in items.items()
                               if row[col] is not None)
            return out

        return TableAdapter(
            date_column=mp["session_date"], therapist_column=mp["therapist_id"],
            text_columns=(mp["record_id"], mp["therapist_id"]),
            item_cells=cells, bad_date=iso,
        )

    def header(self, state: FileState) -> str:
        cols = redcap_columns(self.spec.mapping)
        if state.fault == "schema_drift":
            rng = state.detail["rng"]
            outcome = next(iter(self.spec.mapping["instruments"].values()))
            candidates = [self.spec.mapping["session_date"], *outcome["items"].values()]
            old = candidates[int(rng.integers(len(candidates)))]
            new = f"{old}_v2" if old != self.spec.mapping["session_date"] else "date"
            cols[cols.index(old)] = new
            state.detail.update(renamed_from=old, renamed_to=new)
        return ",".join(cols)

    def build_table(self, chunk: Chunk) -> tuple[pl.DataFrame, np.ndarray]:
        mp = self.spec.mapping
        starts = period_start(chunk.sess_day, self.options.period)
        labels_by_start = {int(s): period_label(int(s), self.options.period)
                           for s in np.unique(starts)}
        sess_labels = np.array([labels_by_start[int(s)] for s in starts], dtype=object)
        n = chunk.n_sessions
        # REDCap exports sort by record, then event and instance.
        order = np.lexsort((chunk.sess_number, chunk.sess_client, starts))
        cols: dict[str, pl.Series] = {
            mp["record_id"]: pl.Series(chunk.client_ids[chunk.sess_client], dtype=pl.String),
            mp["event_name"]: pl.repeat(mp["session_event"], n, eager=True, dtype=pl.String),
            mp["repeat_instrument"]: pl.repeat(None, n, eager=True, dtype=pl.String),
            mp["session_number"]: pl.Series(chunk.sess_number).cast(pl.String),
            mp["session_date"]: iso_dates(chunk.sess_day),
            mp["therapist_id"]: pl.Series(list(self.spec.therapists)).gather(
                chunk.sess_therapist),
        }
        for code, entry in mp["instruments"].items():
            rows, scores = chunk.admins[code]
            checkbox = entry.get("checkbox", False)
            for k, col in entry["items"].items():
                base = pl.repeat("0" if checkbox else None, n, eager=True, dtype=pl.String)
                cols[col] = base.scatter(rows, score_strings(code, scores[:, k - 1]))
            status = np.where(self.rng.random(len(rows)) < 0.1, "1", "2")
            cols[entry["complete"]] = pl.repeat("0", n, eager=True, dtype=pl.String).scatter(
                rows, pl.Series(status))
        cols["_file"] = pl.Series(sess_labels, dtype=pl.String)
        table = pl.DataFrame(cols)[order]
        return table, sess_labels

    def render(self, block: pl.DataFrame) -> list[str]:
        text = block.write_csv(include_header=False, null_value="", quote_style="necessary",
                               line_terminator="\n")
        return text.split("\n")[:-1]
