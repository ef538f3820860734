"""The canonical long CSV (docs/formats.md): one row per answered item."""

from __future__ import annotations

import numpy as np
import polars as pl

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

HEADER = ("clinic_id", "client_id", "therapist_id", "session_date", "session_number",
          "instrument", "item", "score")
# Schema drift: a column renamed the way a hand-edited export renames it.
DRIFT = {"score": "value", "session_date": "date", "therapist_id": "therapist"}


def _cells(row: dict) -> list[ItemCell]:
    if row["score"] is None:
        return []
    return [ItemCell("score", row["instrument"], int(row["item"]))]


class CanonicalWriter(ClinicWriter):
    extension = ".csv"

    def adapter(self) -> TableAdapter:
        return TableAdapter(
            date_column="session_date", therapist_column="therapist_id",
            text_columns=("client_id", "therapist_id", "instrument", "score"),
            item_cells=_cells, bad_date=iso,
        )

    def header(self, state: FileState) -> str:
        cols = list(HEADER)
        if state.fault == "schema_drift":
            rng = state.detail["rng"]
            old = list(DRIFT)[int(rng.integers(len(DRIFT)))]
            cols[cols.index(old)] = DRIFT[old]
            state.detail.update(renamed_from=old, renamed_to=DRIFT[old])
        return ",".join(cols)

    def build_table(self, chunk: Chunk) -> tuple[pl.DataFrame, np.ndarray]:
        starts = period_start(chunk.sess_day, self.options.period)
        labels_by_start = {int(s): period_label(int(s), self.options.period)
                           for s in np.unique(starts)}
        sess_labels = np.array([labels_by_start[int(s)] for s in starts], dtype=object)
        parts = []
        for order, code in enumerate(self.spec.instruments):
            rows, scores = chunk.admins[code]
            k, n = scores.shape
            parts.append(pl.DataFrame({
                "sess": np.repeat(rows, n).astype(np.int64),
                "inst": np.full(k * n, order, dtype=np.int8),
                "item": np.tile(np.arange(1, n + 1), k).astype(np.int16),
                "score": score_strings(code, scores.ravel()),
            }))
        long = pl.concat(parts)
        sess = long["sess"].to_numpy()
        day = chunk.sess_day[sess]
        order = np.lexsort((long["item"].to_numpy(), long["inst"].to_numpy(), sess, day))
        long = long[order]
        sess = sess[order]
        codes = pl.Series(list(self.spec.instruments))
        therapists = pl.Series(list(self.spec.therapists))
        table = pl.DataFrame({
            "clinic_id": pl.repeat(self.spec.clinic_id, long.height, eager=True,
                                   dtype=pl.String),
            "client_id": pl.Series(chunk.client_ids[chunk.sess_client[sess]], dtype=pl.String),
            "therapist_id": therapists.gather(chunk.sess_therapist[sess]),
            "session_date": iso_dates(chunk.sess_day[sess]),
            "session_number": pl.Series(chunk.sess_number[sess]).cast(pl.String),
            "instrument": codes.gather(long["inst"].cast(pl.Int64)),
            "item": long["item"].cast(pl.String),
            "score": long["score"],
            "_file": pl.Series(sess_labels[sess], dtype=pl.String),
        })
        return table, sess_labels

    def render(self, block: pl.DataFrame) -> list[str]:
        text = block.write_csv(include_header=False, null_value="", quote_style="necessary",
                               line_terminator="\n")
        return text.split("\n")[:-1]
