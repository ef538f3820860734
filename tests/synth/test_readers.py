"""Every format is read back by a real reader: csv and Polars, fhir.resources, fastexcel."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import fastexcel
import polars as pl
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from tandem.core.contracts import ClinicContract
from tandem.synth.manifest import read_manifest

from .checks import load_contract

CANONICAL_HEADER = ["clinic_id", "client_id", "therapist_id", "session_date",
                    "session_number", "instrument", "item", "score"]


def _files(root: Path, fmt: str) -> list[tuple[dict, Path]]:
    m = read_manifest(root / "manifest.json")
    failed = {f["file"] for f in m["faults"] if f["expected_outcome"] == "file_failed"}
    return [(rec, root / "files" / rec["file"]) for rec in m["files"]
            if rec["format"] == fmt and rec["file"] not in failed]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def test_contracts_are_valid(clean_set: Path) -> None:
    paths = sorted((clean_set / "data_contracts" / "clinics").glob("*.yaml"))
    assert len(paths) == 8
    formats = {load_contract(clean_set, p.stem).format for p in paths}
    assert formats == {"canonical_csv", "redcap_csv", "fhir_ndjson", "excel"}
    for p in paths:
        assert isinstance(load_contract(clean_set, p.stem), ClinicContract)


def test_canonical_csv_reads_with_polars(faulty_set: Path) -> None:
    files = _files(faulty_set, "canonical_csv")
    assert files
    for rec, path in files:
        c = load_contract(faulty_set, rec["clinic_id"])
        text = path.read_bytes().decode(c.encoding).removeprefix("\ufeff")
        df = pl.read_csv(io.StringIO(text), infer_schema=False)
        assert df.columns == CANONICAL_HEADER
        assert df.height == rec["records"]


def test_clean_canonical_is_exactly_the_documented_format(clean_set: Path) -> None:
    for rec, path in _files(clean_set, "canonical_csv"):
        c = load_contract(clean_set, rec["clinic_id"])
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode(c.encoding))))
        assert rows[0] == CANONICAL_HEADER
        for row in rows[1:]:
            assert row[0] == c.clinic_id and row[2] in c.therapists
            assert row[5] in c.instruments and row[7] != ""


def test_redcap_reads_with_polars_and_matches_mapping(faulty_set: Path) -> None:
    files = _files(faulty_set, "redcap_csv")
    assert files
    for rec, path in files:
        c = load_contract(faulty_set, rec["clinic_id"])
        text = path.read_bytes().decode(c.encoding).removeprefix("\ufeff")
        df = pl.read_csv(io.StringIO(text), infer_schema=False)
        mp = c.mapping
        assert df.columns[:4] == ["record_id", "redcap_event_name", "redcap_repeat_instrument",
                                  "redcap_repeat_instance"]
        for entry in mp["instruments"].values():
            assert set(entry["items"].values()) | {entry["complete"]} <= set(df.columns)
        assert set(df["redcap_event_name"].unique()) == {mp["session_event"]}
        assert df["redcap_repeat_instrument"].null_count() == df.height
        assert df.height == rec["records"]


def test_fhir_resources_parse_with_fhir_resources(faulty_set: Path) -> None:
    m = read_manifest(faulty_set / "manifest.json")
    bad_dates = {(f["file"], f["row"]) for f in m["faults"]
                 if f["detail"].get("column") == "authored" and f["kind"] != "future_date"}
    n = 0
    for rec, path in _files(faulty_set, "fhir_ndjson"):
        c = load_contract(faulty_set, rec["clinic_id"])
        urls = {e["questionnaire"] for e in c.mapping["instruments"].values()}
        lines = path.read_text(encoding="utf-8").splitlines()
        for line, text in enumerate(lines[:150], start=1):  # fhir.resources is slow
            if (rec["file"], line) in bad_dates or rec["role"] == "duplicate":
                continue
            qr = QuestionnaireResponse.model_validate(json.loads(text))
            assert qr.status == "completed" and qr.questionnaire in urls
            assert qr.subject.reference.startswith("Patient/")
            n += 1
    assert n > 500


def test_excel_reads_with_fastexcel(faulty_set: Path) -> None:
    m = read_manifest(faulty_set / "manifest.json")
    drift = {f["file"] for f in m["faults"] if f["kind"] == "schema_drift"}
    files = [(r, p) for r, p in _files(faulty_set, "excel")]
    assert files
    for rec, path in files:
        c = load_contract(faulty_set, rec["clinic_id"])
        synonyms = {_norm(s) for v in c.mapping["columns"].values() for s in v}
        synonyms |= {_norm(s) for e in c.mapping["instruments"].values()
                     for v in e["items"].values() for s in v}
        reader = fastexcel.read_excel(path)
        rows = 0
        for name in reader.sheet_names:
            df = reader.load_sheet(name, dtypes="string").to_polars()
            rows += df.height
            if rec["file"] not in drift:
                assert {_norm(h) for h in df.columns} <= synonyms
        assert rows == rec["records"]


def test_clean_set_has_no_faults(clean_set: Path) -> None:
    m = read_manifest(clean_set / "manifest.json")
    assert m["faults"] == []
    assert all(f["role"] == "delivery" for f in m["files"])
    assert any("-W" in f["file"] for f in m["files"])  # weekly files
