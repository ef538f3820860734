"""Reference checks: what an ingest must find in generated files, from the contract alone.

Deliberately written from docs/formats.md, not from the generator's code, so a test that
compares their findings with the manifest checks that the manifest is exact.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path

from tandem.core.contracts import ClinicContract, Instrument, load_instruments

Finding = tuple[str, int, str]  # (file, line, outcome)


def instruments() -> dict[str, Instrument]:
    return load_instruments()


def load_contract(root: Path, clinic_id: str) -> ClinicContract:
    import yaml

    path = root / "data_contracts" / "clinics" / f"{clinic_id}.yaml"
    return ClinicContract.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def _date(text: str, fmt: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, fmt).date()
    except ValueError:
        return None


def _score_ok(inst: Instrument, text: str) -> bool:
    try:
        v = float(text)
    except ValueError:
        return False
    r = inst.item_range
    if not r.min <= v <= r.max:
        return False
    return round(v, r.decimals or 0) == v


def _row_ok_common(c: ClinicContract, therapist: str, date_text: str, as_of: dt.date) -> bool:
    d = _date(date_text, c.date_format)
    return therapist in c.therapists and d is not None and c.started_on <= d <= as_of


def read_text(path: Path, encoding: str) -> str:
    text = path.read_bytes().decode(encoding)
    return text.removeprefix("\ufeff")


def check_canonical(path: Path, rel: str, c: ClinicContract, as_of: dt.date) -> list[Finding]:
    insts = instruments()
    out: list[Finding] = []
    seen: dict[tuple, tuple[int, tuple]] = {}
    rows = list(csv.reader(io.StringIO(read_text(path, c.encoding))))
    for line, raw in enumerate(rows[1:], start=2):
        row = [v.strip() for v in raw]
        if row != raw:
            out.append((rel, line, "normalised"))
        _, client, ther, date, number, code, item, score = row
        inst = insts.get(code)
        ok = (_row_ok_common(c, ther, date, as_of) and inst is not None
              and code in c.instruments and 1 <= int(item) <= inst.n_items
              and score != "" and _score_ok(inst, score))
        key = (client, number, code, item)
        if key in seen:
            first_line, first_row = seen[key]
            if first_row == tuple(row):
                out.append((rel, line, "duplicate_skipped"))
                continue
            out.append((rel, first_line, "quarantine"))
            out.append((rel, line, "quarantine"))
            continue
        seen[key] = (line, tuple(row))
        if not ok:
            out.append((rel, line, "quarantine"))
    return out


def check_redcap(path: Path, rel: str, c: ClinicContract, as_of: dt.date) -> list[Finding]:
    insts = instruments()
    mp = c.mapping
    out: list[Finding] = []
    seen: dict[tuple, tuple[int, tuple]] = {}
    reader = csv.DictReader(io.StringIO(read_text(path, c.encoding)))
    for line, raw in enumerate(reader, start=2):
        row = {k: v.strip() for k, v in raw.items()}
        if row != raw:
            out.append((rel, line, "normalised"))
        ok = _row_ok_common(c, row[mp["therapist_id"]], row[mp["session_date"]], as_of)
        for code, entry in mp["instruments"].items():
            values = [row[col] for col in entry["items"].values()]
            status = row[entry["complete"]]
            if status in ("1", "2"):
                ok = ok and all(v != "" and _score_ok(insts[code], v) for v in values)
            elif entry.get("checkbox"):
                ok = ok and all(v in ("0", "1") for v in values)
            else:
                ok = ok and all(v == "" for v in values)
        key = (row[mp["record_id"]], row[mp["event_name"]], row[mp["session_number"]])
        if key in seen:
            first_line, first_row = seen[key]
            if first_row == tuple(row.values()):
                out.append((rel, line, "duplicate_skipped"))
                continue
            out.extend([(rel, first_line, "quarantine"), (rel, line, "quarantine")])
            continue
        seen[key] = (line, tuple(row.values()))
        if not ok:
            out.append((rel, line, "quarantine"))
    return out


def check_fhir(path: Path, rel: str, c: ClinicContract, as_of: dt.date) -> list[Finding]:
    insts = instruments()
    mp = c.mapping
    by_q = {e["questionnaire"]: (code, e) for code, e in mp["instruments"].items()}
    out: list[Finding] = []
    seen: dict[str, tuple[int, str]] = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        res = json.loads(text)
        code, entry = by_q[res["questionnaire"]]
        ther = res["author"]["reference"].removeprefix("Practitioner/")
        ok = _row_ok_common(c, ther, res["authored"][:10], as_of)
        links = {v: k for k, v in entry["items"].items()}
        answered = 0
        for item in res["item"]:
            links.pop(item["linkId"])
            if "answer" not in item:
                ok = False
                continue
            ans = item["answer"][0]
            if entry["value"] == "valueCoding":
                value = entry["answer_codes"].get(ans["valueCoding"]["code"])
                ok = ok and value is not None
            else:
                ok = ok and _score_ok(insts[code], str(ans[entry["value"]]))
            answered += 1
        ok = ok and not links
        if res["id"] in seen:
            first_line, first_text = seen[res["id"]]
            if first_text == text:
                out.append((rel, line, "duplicate_skipped"))
                continue
            out.extend([(rel, first_line, "quarantine"), (rel, line, "quarantine")])
            continue
        seen[res["id"]] = (line, text)
        if not ok:
            out.append((rel, line, "quarantine"))
    return out


CHECKS = {"canonical_csv": check_canonical, "redcap_csv": check_redcap,
          "fhir_ndjson": check_fhir}
