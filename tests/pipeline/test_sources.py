"""The REDCap, FHIR and Excel readers follow their contracts (no warehouse, no GX)."""

from __future__ import annotations

import io
import json

import polars as pl
import pytest

from tandem.core.contracts import ClinicContract
from tandem.pipeline.sources import SourceError, reader_for, split_notes
from transforms.staging import CANONICAL_COLUMNS


def _spec(fmt: str):
    import datetime as dt

    from tandem.synth.clinics import make_clinics
    from tandem.synth.options import GenerateOptions

    opts = GenerateOptions(out=None, clinics=4, clients_per_clinic=8, as_of=dt.date(2026, 6, 30))
    return next(s for s in make_clinics(opts) if s.format == fmt)


def _read(fmt: str, data: bytes, contract: ClinicContract) -> tuple[pl.DataFrame, list[str]]:
    return split_notes(reader_for(fmt)(data, contract, "test-file"))


def test_redcap_reads_filled_forms_only_and_keeps_blank_items():
    contract = _spec("redcap_csv").contract()
    mp = contract.mapping
    from tandem.synth.clinics import redcap_columns

    cols = redcap_columns(mp)
    row = dict.fromkeys(cols, "")
    row.update({mp["record_id"]: "4044", mp["event_name"]: mp["session_event"],
                mp["session_number"]: "3", mp["session_date"]: "2025-03-02",
                mp["therapist_id"]: contract.therapists[0]})
    first = next(iter(mp["instruments"]))
    entry = mp["instruments"][first]
    items = list(entry["items"].values())
    for col in items:
        row[col] = "1"
    row[items[1]] = ""  # a blank item of a filled form: a missing answer
    row[entry["complete"]] = "2"
    for other in list(mp["instruments"])[1:]:
        row[mp["instruments"][other]["complete"]] = "0"  # never opened: not a row
    text = ",".join(cols) + "\n" + ",".join(row[c] for c in cols) + "\n"
    frame, _ = _read("redcap_csv", text.encode(), contract)
    assert frame.columns[:8] == CANONICAL_COLUMNS
    assert frame.height == len(items)
    assert set(frame["instrument"]) == {first}
    assert frame["source_row"].to_list() == [2] * len(items)
    assert frame["client_id"][0] == "4044" and frame["session_number"][0] == "3"
    assert frame.filter(pl.col("item") == "2")["score"].to_list() == [""] or \
        frame.filter(pl.col("item") == "2")["score"].to_list() == [None]


def test_redcap_renamed_field_fails_the_file():
    contract = _spec("redcap_csv").contract()
    from tandem.synth.clinics import redcap_columns

    cols = redcap_columns(contract.mapping)
    cols[cols.index(contract.mapping["session_date"])] = "date"
    with pytest.raises(SourceError, match="missing fields"):
        _read("redcap_csv", (",".join(cols) + "\n").encode(), contract)


def test_fhir_questionnaire_response_items_codes_and_bad_answer():
    spec = _spec("fhir_ndjson")
    contract = spec.contract()
    entry = contract.mapping["instruments"]["PHQ9"]
    links = list(entry["items"].values())
    items = [{"linkId": link, "answer": [{"valueCoding": {"code": "LA6570-1"}}]}
             for link in links]
    items[2] = {"linkId": links[2], "answer": [{"valueCoding": {"code": "LA9999-9"}}]}
    items[3] = {"linkId": links[3]}  # no answer
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed",
          "questionnaire": entry["questionnaire"], "subject": {"reference": "Patient/P1"},
          "author": {"reference": f"Practitioner/{contract.therapists[0]}"},
          "authored": "2025-03-02T10:00:00Z",
          "extension": [{"url": contract.mapping["session_number"]["url"], "valueInteger": 4}],
          "item": items}
    other = {"resourceType": "Patient", "id": "P1"}
    data = (json.dumps(other) + "\n" + json.dumps(qr) + "\n").encode()
    frame, notes = _read("fhir_ndjson", data, contract)
    assert notes == ["ignored 1 Patient resource the contract does not map"]
    assert frame.height == 9 and set(frame["source_row"]) == {2}
    assert frame["client_id"][0] == "P1" and frame["session_number"][0] == "4"
    assert frame["session_date"][0] == "2025-03-02"
    by_item = {r["item"]: r for r in frame.iter_rows(named=True)}
    assert by_item["1"]["score"] == "2" and by_item["1"]["reader_issue"] is None
    assert "LA9999-9" in by_item["3"]["reader_issue"]
    assert by_item["4"]["score"] is None


def test_fhir_truncated_export_fails_the_file():
    contract = _spec("fhir_ndjson").contract()
    with pytest.raises(SourceError, match="truncated"):
        _read("fhir_ndjson", b'{"resourceType":"Patient"}\n{"resourceType":"Questionn', contract)


def _workbook(headers: list[str], rows: list[list], sheet: str = "Mar 2025") -> bytes:
    import xlsxwriter

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet(sheet)
    ws.write_row(0, 0, headers)
    for r, values in enumerate(rows, start=1):
        ws.write_row(r, 0, values)
    wb.add_worksheet("Notes").write(0, 0, "anything")
    wb.close()
    return buf.getvalue()


def test_excel_matches_hand_typed_headers_and_names_sheet_rows():
    contract = _spec("excel").contract()
    mp = contract.mapping
    headers = ["  client  ID", "COUNSELLOR", "date of session", "Session #"]
    values = ["HI-000001", contract.therapists[0], "31/02/2025", 2]
    for code, entry in mp["instruments"].items():
        for synonyms in entry["items"].values():
            headers.append(synonyms[-1].upper())
            values.append(1 if code != "ORS" else 5.5)
    frame, notes = _read("excel", _workbook(headers, [values, [None] * len(values)]), contract)
    assert notes and "Notes" in notes[0]
    assert set(frame["source_ref"]) == {"Mar 2025!2"}
    assert set(frame["session_date"]) == {"31/02/2025"}  # text dates are kept as typed
    assert set(frame["session_number"]) == {"2"}
    assert frame.filter(pl.col("instrument") == "ORS")["score"].to_list() == ["5.5"] * 4


def test_excel_unknown_header_fails_the_workbook():
    contract = _spec("excel").contract()
    with pytest.raises(SourceError, match="Worker"):
        _read("excel", _workbook(["Client", "Worker", "Date", "Session"], [["a", "b", "c", 1]]),
              contract)
