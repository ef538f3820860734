"""FHIR R4 NDJSON (a Bulk Data export): QuestionnaireResponse items and Observation totals.

One resource per line; ``source_row`` is the line number. How resources map is in the
clinic contract's ``mapping`` (docs/formats.md):

- a ``QuestionnaireResponse`` whose ``questionnaire`` is one of the contract's instruments
  gives one canonical row per mapped ``linkId`` (answers from ``valueCoding`` via answer
  codes, or ``valueInteger``/``valueDecimal``/``valueQuantity``); an instrument entry may
  name a ``total`` linkId, read as a reported total (``item`` = ``total``);
- an ``Observation`` whose code is an instrument's LOINC total (``loinc.total`` in the
  instrument definition, e.g. 44261-6 for the PHQ-9) or its panel code with a number is a
  reported total; an item's LOINC code gives an item row;
- anything else (Patient, Encounter, an unrelated lab Observation) is not outcome data:
  it is ignored and counted in the batch's notes, not quarantined.

A resource the contract maps but whose status says its values are not a result (e.g. an
Observation with status ``unknown``), or with an answer code outside the instrument, is
kept as a row with a ``reader_issue`` and quarantined with that reason. A line that is not
JSON fails the whole file (an export cut short): nothing is half-loaded.

Parsing is plain ``json`` over the needed paths rather than ``fhir.resources`` models:
those validate every field of every resource and are ~50x slower on a bulk export, and
an invalid resource must become a quarantined row, not an exception.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import polars as pl

from tandem.core.contracts import ClinicContract, load_instruments
from tandem.pipeline.sources import SourceError, decode
from transforms.staging import CANONICAL_COLUMNS, TOTAL_ITEM

OBSERVATION_STATUSES = ("final", "amended", "corrected")
QR_STATUSES = ("completed", "amended")


def _path(resource: Any, path: str) -> Any:
    """A value at a dotted path (``performer.0.reference``); None when absent."""
    cur = resource
    for part in path.split("."):
        if isinstance(cur, list):
            if not part.isdigit() or int(part) >= len(cur):
                return None
            cur = cur[int(part)]
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
        if cur is None:
            return None
    return cur


def _field(resource: dict, spec: dict | None, default_path: str | None = None) -> str | None:
    """A text field per a mapping entry ``{path, prefix, url, value, default}``."""
    spec = spec or {}
    path = spec.get("path", default_path)
    if path is None:
        return spec.get("default")
    value = _path(resource, path)
    if spec.get("url") and isinstance(value, list):  # an extension, found by its url
        hit = next((e for e in value if isinstance(e, dict) and e.get("url") == spec["url"]),
                   None)
        value = hit.get(spec.get("value", "valueInteger")) if hit else None
    if value is None:
        return spec.get("default")
    text = str(value)
    prefix = spec.get("prefix")
    if prefix and text.startswith(prefix):
        text = text[len(prefix):]
    if spec.get("type") == "dateTime" or path in ("authored", "effectiveDateTime", "issued"):
        text = text[:10]  # the date part, as written (the session's local date)
    return text


def _answer_value(answer: dict, codes: dict[str, float]) -> tuple[str | None, str | None]:
    """(score text, issue) of one answer."""
    for key in ("valueInteger", "valueDecimal"):
        if key in answer:
            return str(answer[key]), None
    if "valueQuantity" in answer:
        return str((answer["valueQuantity"] or {}).get("value")), None
    if "valueCoding" in answer:
        code = (answer["valueCoding"] or {}).get("code")
        if code in codes:
            return str(codes[code]), None
        display = (answer["valueCoding"] or {}).get("display")
        return None, (f"answer code {code!r}" + (f" ({display!r})" if display else "")
                      + " is not one of the instrument's answer codes")
    if "valueString" in answer:
        return str(answer["valueString"]), None
    return None, None


def _questionnaire_key(url: str | None) -> str:
    return (url or "").split("|", 1)[0].rstrip("/")


class _Rows:
    """Column lists, appended per canonical row (resources are few per line)."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {c: [] for c in
                                      [*CANONICAL_COLUMNS, "source_row", "reader_issue"]}

    def add(self, common: dict, instrument: str | None, item: str | None, score: str | None,
            line: int, issue: str | None) -> None:
        for k in ("clinic_id", "client_id", "therapist_id", "session_date", "session_number"):
            self.cols[k].append(common.get(k))
        self.cols["instrument"].append(instrument)
        self.cols["item"].append(item)
        self.cols["score"].append(score)
        self.cols["source_row"].append(line)
        self.cols["reader_issue"].append(issue)

    def frame(self) -> pl.DataFrame:
        schema = {c: pl.String for c in self.cols} | {"source_row": pl.Int64}
        return pl.DataFrame(self.cols, schema=schema)


def _resources(text: str, source_name: str) -> list[tuple[int, dict]]:
    """(line, resource) pairs: NDJSON, or a single resource or Bundle in one JSON document."""
    stripped = text.strip()
    if not stripped:
        raise SourceError(f"{source_name} is empty")
    out: list[tuple[int, dict]] = []
    lines = text.splitlines()
    try:
        for n, line in enumerate(lines, start=1):
            if line.strip():
                out.append((n, json.loads(line)))
        return out
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: absurd nesting
        bad_line = n
        first_error = exc
    try:  # a pretty-printed single resource or Bundle (files written by hand or by tests)
        doc = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        where = "the last line" if bad_line == len(lines) else f"line {bad_line}"
        why = getattr(first_error, "msg", "nested too deeply")
        raise SourceError(
            f"{source_name}: {where} is not a complete JSON resource ({why}); "
            f"the export looks truncated or corrupt, ask the clinic to send it again"
        ) from None  # the JSON error's .doc is the line itself: it stays out of any log
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        return [(i, e.get("resource") or {}) for i, e in enumerate(doc.get("entry") or [], 1)]
    return [(1, doc)]


def read(data: bytes, contract: ClinicContract,
         source_name: str) -> tuple[pl.DataFrame, list[str]]:
    """One canonical row per answered item or reported total of every mapped resource."""
    mp = contract.mapping
    text = decode(data, contract.encoding, source_name)
    resources = _resources(text, source_name)
    defs = load_instruments()
    entries = {code: (mp.get("instruments") or {}).get(code, {}) for code in contract.instruments}
    by_questionnaire = {_questionnaire_key(e.get("questionnaire")): code
                        for code, e in entries.items() if e.get("questionnaire")}
    obs_codes: dict[str, tuple[str, str]] = {}  # LOINC code -> (instrument, item or total)
    for code in contract.instruments:
        inst = defs.get(code)
        if inst is None:
            continue
        if inst.loinc.get("total"):
            obs_codes[inst.loinc["total"]] = (code, TOTAL_ITEM)
        if inst.loinc.get("panel"):
            obs_codes[inst.loinc["panel"]] = (code, TOTAL_ITEM)
        for item in inst.items:
            if item.loinc:
                obs_codes[item.loinc] = (code, str(item.number))
    for loinc_code, code in (mp.get("observations", {}).get("totals") or {}).items():
        obs_codes[str(loinc_code)] = (code, TOTAL_ITEM)
    qr_statuses = mp.get("statuses") or list(QR_STATUSES)
    obs_map = mp.get("observations") or {}
    obs_statuses = obs_map.get("statuses") or list(OBSERVATION_STATUSES)
    wanted = mp.get("resource_types") or ["QuestionnaireResponse", "Observation"]

    rows = _Rows()
    ignored: Counter[str] = Counter()
    for line, res in resources:
        rtype = res.get("resourceType") if isinstance(res, dict) else None
        if rtype not in wanted:
            ignored[str(rtype)] += 1
            continue
        if rtype == "QuestionnaireResponse":
            _questionnaire_response(res, line, contract, mp, entries, defs, by_questionnaire,
                                    qr_statuses, rows, ignored)
        else:
            _observation(res, line, contract, mp, obs_map, obs_codes, obs_statuses, rows,
                         ignored)
    frame = rows.frame()
    if (mp.get("session_number") or {}).get("derive") == "date_order" and frame.height:
        # Sources with no session number (e.g. quality-measure Observations): number each
        # client's distinct session dates in this file. Stable only within one file.
        frame = frame.with_columns(
            session_number=pl.col("session_date").rank("dense").over("client_id")
            .cast(pl.Int64).cast(pl.String)
        )
    notes = [f"ignored {n} {t} resource{'s' if n > 1 else ''} the contract does not map"
             for t, n in sorted(ignored.items())]
    return frame.with_columns(source_ref=pl.col("source_row").cast(pl.String)), notes


def _common(res: dict, contract: ClinicContract, mp: dict, date_default: str) -> dict:
    sess = mp.get("session_number") or {}
    return {
        "clinic_id": contract.clinic_id,
        "client_id": _field(res, mp.get("client_id"), "subject.reference"),
        "therapist_id": _field(res, mp.get("therapist_id"), None),
        "session_date": _field(res, mp.get("session_date"), date_default),
        "session_number": None if sess.get("derive") else _field(res, sess, None),
    }


def _questionnaire_response(res: dict, line: int, contract: ClinicContract, mp: dict,
                            entries: dict, defs: dict, by_questionnaire: dict,
                            statuses: list[str], rows: _Rows, ignored: Counter) -> None:
    code = by_questionnaire.get(_questionnaire_key(res.get("questionnaire")))
    common = _common(res, contract, mp, "authored")
    if code is None:
        rows.add(common, None, None, None, line,
                 f"questionnaire {res.get('questionnaire')!r} is not one of the clinic's "
                 f"instruments in its contract")
        return
    entry = entries[code]
    inst = defs.get(code)
    answer_codes = {**(inst.answer_codes if inst else {}), **(entry.get("answer_codes") or {})}
    issue = None
    if res.get("status") not in statuses:
        issue = (f"QuestionnaireResponse status {res.get('status')!r} is not one the contract "
                 f"accepts ({', '.join(statuses)})")
    link_to_item = {str(v): str(int(k)) for k, v in (entry.get("items") or {}).items()}
    total_link = (entry.get("total") or {}).get("linkId") if isinstance(entry.get("total"),
                                                                        dict) else None
    found = False
    for it in _flatten(res.get("item") or []):
        link = str(it.get("linkId"))
        number = link_to_item.get(link)
        if number is None and link == total_link:
            number = TOTAL_ITEM
        if number is None:
            continue  # a question outside the instrument's scored items (e.g. PHQ-9 item 10)
        answers = it.get("answer") or []
        score, item_issue = _answer_value(answers[0], answer_codes) if answers else (None, None)
        if item_issue:
            item_issue = f"{code} item {number} (linkId {link}): {item_issue}"
        rows.add(common, code, number, score, line, issue or item_issue)
        found = True
    if not found:
        rows.add(common, code, None, None, line,
                 issue or f"{code} QuestionnaireResponse has none of the contract's linkIds")


def _flatten(items: list[dict]) -> list[dict]:
    out = []
    for it in items:
        out.append(it)
        if it.get("item"):
            out.extend(_flatten(it["item"]))
    return out


def _observation(res: dict, line: int, contract: ClinicContract, mp: dict, obs_map: dict,
                 obs_codes: dict, statuses: list[str], rows: _Rows, ignored: Counter) -> None:
    codings = (res.get("code") or {}).get("coding") or []
    hit = next((obs_codes[c.get("code")] for c in codings if c.get("code") in obs_codes), None)
    value = None
    for key in ("valueInteger", "valueDecimal"):
        if key in res:
            value = res[key]
    if value is None and isinstance(res.get("valueQuantity"), dict):
        value = res["valueQuantity"].get("value")
    if hit is None or (hit[1] == TOTAL_ITEM and value is None and "valueInteger" not in res
                       and "valueQuantity" not in res):
        ignored["Observation (not an instrument score)"] += 1
        return
    merged = {**mp, **{k: v for k, v in obs_map.items()
                       if k in ("client_id", "therapist_id", "session_date", "session_number")}}
    merged.setdefault("session_date", None)
    if not obs_map.get("session_date"):
        merged["session_date"] = {"path": "effectiveDateTime"}
    if not obs_map.get("therapist_id"):
        merged["therapist_id"] = {"path": "performer.0.reference", "prefix": "Practitioner/",
                                  **{k: v for k, v in (mp.get("therapist_id") or {}).items()
                                     if k == "default"}}
    common = _common(res, contract, merged, "effectiveDateTime")
    if common["session_date"] is None and isinstance(res.get("effectivePeriod"), dict):
        common["session_date"] = str(res["effectivePeriod"].get("start") or "")[:10] or None
    issue = None
    if res.get("status") not in statuses:
        issue = (f"Observation status {res.get('status')!r} is not a result the contract "
                 f"accepts ({', '.join(statuses)})")
    rows.add(common, hit[0], hit[1], None if value is None else str(value), line, issue)
