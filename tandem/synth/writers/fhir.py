"""FHIR R4 QuestionnaireResponse resources as NDJSON, as a Bulk Data export writes them.

One resource per line and per administration (one questionnaire at one session); PHQ-9
and GAD-7 use their LOINC panels, item codes and answer codes (DOMAIN.md).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tandem.synth.clinics import (
    LOINC_ANSWER_DISPLAY,
    LOINC_ANSWERS,
    N_ITEMS,
    SESSION_NUMBER_URL,
)
from tandem.synth.faults import ItemCell, TableAdapter, iso
from tandem.synth.options import FaultRates
from tandem.synth.population import Chunk
from tandem.synth.writers.base import (
    ClinicWriter,
    FileState,
    iso_dates,
    period_label,
    period_start,
    score_strings,
)

MAX_ITEMS = max(N_ITEMS.values())
UNKNOWN_ANSWER = "LA9999-9"  # not an answer code of any instrument: an out-of-range answer


def _cells(row: dict) -> list[ItemCell]:
    code = row["instrument"]
    return [ItemCell(f"v{k}", code, k) for k in range(1, N_ITEMS[code] + 1)
            if row[f"v{k}"] is not None]


class FhirWriter(ClinicWriter):
    extension = ".ndjson"
    has_header = False

    def adapter(self) -> TableAdapter:
        return TableAdapter(
            date_column="date", therapist_column="therapist_id", text_columns=(),
            item_cells=_cells, bad_date=iso,
            kinds=tuple(k for k in FaultRates.ROW_KINDS if k != "whitespace"),
        )

    def header(self, state: FileState) -> str:
        return ""

    def fix_detail(self, detail: dict) -> dict:
        col = detail.get("column", "")
        if col.startswith("v") and col[1:].isdigit():
            entry = self.spec.mapping["instruments"][detail["instrument"]]
            detail = {**detail, "column": "item.answer", "linkId": entry["items"][detail["item"]]}
        elif col == "date":
            detail = {**detail, "column": "authored"}
        elif col == "therapist_id":
            detail = {**detail, "column": "author.reference"}
        return detail

    def build_table(self, chunk: Chunk) -> tuple[pl.DataFrame, np.ndarray]:
        starts = period_start(chunk.sess_day, self.options.period)
        labels_by_start = {int(s): period_label(int(s), self.options.period)
                           for s in np.unique(starts)}
        sess_labels = np.array([labels_by_start[int(s)] for s in starts], dtype=object)
        # A session's forms are filled in one after another from a start time.
        minute = 8 * 60 + self.rng.integers(0, 10 * 60, chunk.n_sessions)
        parts = []
        for order, code in enumerate(self.spec.instruments):
            rows, scores = chunk.admins[code]
            cols: dict = {
                "sess": rows.astype(np.int64),
                "inst": np.full(len(rows), order, dtype=np.int8),
            }
            for k in range(1, MAX_ITEMS + 1):
                if k <= scores.shape[1]:
                    cols[f"v{k}"] = score_strings(code, scores[:, k - 1])
                else:
                    cols[f"v{k}"] = pl.repeat(None, len(rows), eager=True, dtype=pl.String)
            parts.append(pl.DataFrame(cols))
        adm = pl.concat(parts)
        sess = adm["sess"].to_numpy()
        inst = adm["inst"].to_numpy()
        order = np.lexsort((inst, sess, chunk.sess_day[sess]))
        adm, sess, inst = adm[order], sess[order], inst[order]
        codes = np.array(self.spec.instruments, dtype=object)
        client = chunk.client_ids[chunk.sess_client[sess]].astype(object)
        number = chunk.sess_number[sess]
        t = minute[sess] + 4 * inst
        ids = [f"{self.spec.clinic_id}-{c}-{n}-{code.lower()}"
               for c, n, code in zip(client, number, codes[inst], strict=True)]
        table = pl.DataFrame({
            "id": pl.Series(ids, dtype=pl.String),
            "client_id": pl.Series(client, dtype=pl.String),
            "therapist_id": pl.Series(list(self.spec.therapists)).gather(
                chunk.sess_therapist[sess]),
            "date": iso_dates(chunk.sess_day[sess]),
            "time": pl.Series([f"{h:02d}:{mi:02d}:00" for h, mi in zip(t // 60, t % 60,
                                                                         strict=True)]),
            "session_number": pl.Series(number).cast(pl.String),
            "instrument": pl.Series(codes[inst], dtype=pl.String),
            **{f"v{k}": adm[f"v{k}"] for k in range(1, MAX_ITEMS + 1)},
            "_file": pl.Series(sess_labels[sess], dtype=pl.String),
        })
        return table, sess_labels

    def render(self, block: pl.DataFrame) -> list[str]:
        """Lines built with Polars string expressions, one instrument at a time."""
        parts = []
        indexed = block.with_row_index("_i")
        for code, entry in self.spec.mapping["instruments"].items():
            sub = indexed.filter(pl.col("instrument") == code)
            if sub.height == 0:
                continue
            items = [self._item_expr(f"v{k}", link, entry["value"])
                     for k, link in entry["items"].items()]
            line = pl.concat_str([
                pl.lit('{"resourceType":"QuestionnaireResponse","id":"'), pl.col("id"),
                pl.lit(f'","extension":[{{"url":"{SESSION_NUMBER_URL}","valueInteger":'),
                pl.col("session_number"),
                pl.lit(f'}}],"questionnaire":"{entry["questionnaire"]}","status":"completed",'
                       '"subject":{"reference":"Patient/'), pl.col("client_id"),
                pl.lit('"},"authored":"'), pl.col("date"), pl.lit("T"), pl.col("time"),
                pl.lit('Z","author":{"reference":"Practitioner/'), pl.col("therapist_id"),
                pl.lit('"},"item":['), pl.concat_str(items, separator=","), pl.lit("]}"),
            ])
            parts.append(sub.select("_i", line.alias("line")))
        lines = pl.concat(parts).sort("_i")["line"]
        return lines.to_list()

    @staticmethod
    def _item_expr(col: str, link: str, value_kind: str) -> pl.Expr:
        v = pl.col(col)
        if value_kind == "valueCoding":
            coding = {
                str(j): f'{{"system":"http://loinc.org","code":"{code}","display":"{disp}"}}'
                for j, (code, disp) in enumerate(zip(LOINC_ANSWERS, LOINC_ANSWER_DISPLAY,
                                                     strict=True))
            }
            unknown = pl.concat_str([
                pl.lit(f'{{"system":"http://loinc.org","code":"{UNKNOWN_ANSWER}","display":"'),
                v, pl.lit('"}')])
            answer = pl.concat_str([
                pl.lit('{"valueCoding":'),
                v.replace_strict(coding, default=None, return_dtype=pl.String).fill_null(
                    unknown),
                pl.lit("}")])
        else:
            answer = pl.concat_str([pl.lit(f'{{"{value_kind}":'), v, pl.lit("}")])
        return (pl.when(v.is_null()).then(pl.lit(f'{{"linkId":"{link}"}}'))
                .otherwise(pl.concat_str([pl.lit(f'{{"linkId":"{link}","answer":['), answer,
                                          pl.lit("]}")])))
