"""The manifest agrees with the files: every file listed, every fault where it says."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from tandem.synth.manifest import read_manifest

from .checks import CHECKS, load_contract

ROW_OUTCOMES = {"quarantine", "duplicate_skipped", "normalised"}


@pytest.fixture(scope="module")
def manifest(faulty_set: Path) -> dict:
    return read_manifest(faulty_set / "manifest.json")


def test_every_file_is_listed_with_its_hash(faulty_set: Path, manifest: dict) -> None:
    on_disk = {p.relative_to(faulty_set / "files").as_posix()
               for p in (faulty_set / "files").rglob("*") if p.is_file()}
    listed = {f["file"]: f for f in manifest["files"]}
    assert on_disk == set(listed)
    for rel, rec in listed.items():
        data = (faulty_set / "files" / rel).read_bytes()
        assert rec["bytes"] == len(data)
        assert rec["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["totals"]["files"] == len(listed)
    assert manifest["totals"]["administrations"] == sum(
        c["administrations"] for c in manifest["clinics"])
    deliveries = [f for f in manifest["files"] if f["role"] == "delivery"]
    assert sum(f["administrations"] for f in deliveries) == manifest["totals"]["administrations"]


def test_every_fault_kind_appears_in_every_format(manifest: dict) -> None:
    by_format = {c["clinic_id"]: c["format"] for c in manifest["clinics"]}
    kinds: dict[str, set[str]] = {}
    for f in manifest["faults"]:
        kinds.setdefault(by_format[f["file"].split("/")[0]], set()).add(f["kind"])
    row_kinds = {"out_of_range", "missing_item", "impossible_date", "future_date",
                 "unknown_therapist", "date_swap", "duplicate_row", "conflicting_duplicate"}
    for fmt, seen in kinds.items():
        assert row_kinds <= seen, (fmt, row_kinds - seen)
    assert {"whitespace", "bom", "latin1_encoding", "corrected_file", "schema_drift"} <= (
        kinds["canonical_csv"] | kinds["redcap_csv"])
    assert {"duplicate_file", "truncated_file"} <= kinds["excel"] | kinds["fhir_ndjson"]
    outcomes = Counter(f["expected_outcome"] for f in manifest["faults"])
    assert set(outcomes) <= set(manifest["outcomes"])
    assert outcomes["undetectable"] > 0


def test_file_faults_are_what_they_say(faulty_set: Path, manifest: dict) -> None:
    files = faulty_set / "files"
    for f in manifest["faults"]:
        if f["kind"] == "duplicate_file":
            assert (files / f["file"]).read_bytes() == (
                files / f["detail"]["duplicate_of"]).read_bytes()
        elif f["kind"] == "corrected_file":
            new = (files / f["file"]).read_bytes().splitlines()
            old = (files / f["detail"]["replaces"]).read_bytes().splitlines()
            changed = [i + 1 for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
            assert changed == f["detail"]["rows_corrected"] and changed
            assert f["file"].rsplit(".", 1)[0].endswith("_corrected")
        elif f["kind"] == "truncated_file":
            assert not (files / f["file"]).read_bytes().endswith(b"\n")
        elif f["kind"] == "bom":
            assert (files / f["file"]).read_bytes().startswith(b"\xef\xbb\xbf")
        elif f["kind"] == "latin1_encoding":
            data = (files / f["file"]).read_bytes()
            data.decode("latin-1")
            with pytest.raises(UnicodeDecodeError):
                data.decode("utf-8")


def test_row_faults_are_exactly_what_a_reader_finds(faulty_set: Path, manifest: dict) -> None:
    """Quarantine, duplicate and whitespace entries match an independent check's findings."""
    as_of = dt.date.fromisoformat(manifest["as_of"])
    failed = {f["file"] for f in manifest["faults"] if f["expected_outcome"] == "file_failed"}
    expected: dict[str, set] = {}
    for f in manifest["faults"]:
        if f["row"] is not None and f["expected_outcome"] in ROW_OUTCOMES:
            expected.setdefault(f["file"], set()).add((f["file"], f["row"],
                                                       f["expected_outcome"]))
    checked = 0
    for rec in manifest["files"]:
        if rec["format"] not in CHECKS or rec["file"] in failed or rec["role"] == "duplicate":
            continue
        contract = load_contract(faulty_set, rec["clinic_id"])
        found = set(CHECKS[rec["format"]](faulty_set / "files" / rec["file"], rec["file"],
                                          contract, as_of))
        assert found == expected.get(rec["file"], set()), rec["file"]
        checked += len(found)
    assert checked > 200


def test_fault_values_are_in_the_files(faulty_set: Path, manifest: dict) -> None:
    """Spot-check by value: the faulted field holds the value the manifest gives."""
    import csv
    import io

    clinics = {c["clinic_id"]: c for c in manifest["clinics"]}
    parsed: dict[str, list[list[str]]] = {}
    for f in manifest["faults"]:
        if f["row"] is None or f["kind"] in ("duplicate_row", "schema_drift"):
            continue
        clinic = clinics[f["file"].split("/")[0]]
        path = faulty_set / "files" / f["file"]
        if clinic["format"] in ("canonical_csv", "redcap_csv"):
            if f["file"] not in parsed:
                text = path.read_bytes().decode(clinic["encoding"]).removeprefix("\ufeff")
                parsed[f["file"]] = list(csv.reader(io.StringIO(text)))
            rows = parsed[f["file"]]
            row = dict(zip(rows[0], rows[f["row"] - 1], strict=True))
            want = f["detail"]["original" if f["detail"].get("role") == "first" else "value"]
            assert row[f["detail"]["column"]] == (want or ""), f
        elif clinic["format"] == "fhir_ndjson":
            res = json.loads(path.read_text().splitlines()[f["row"] - 1])
            col = f["detail"]["column"]
            if col == "authored":
                assert res["authored"].startswith(f["detail"]["value"])
            elif col == "author.reference":
                assert res["author"]["reference"] == "Practitioner/" + f["detail"]["value"]
            else:
                item = next(i for i in res["item"] if i["linkId"] == f["detail"]["linkId"])
                assert item["linkId"] == f["detail"]["linkId"]
                assert ("answer" in item) == (f["detail"]["value"] is not None)
