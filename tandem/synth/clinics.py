"""The clinics of a generated data set and the source contracts that describe them.

The contract ``mapping`` written here is what the format writers use to lay out the
files, so the contract and the files cannot drift apart. ``docs/formats.md`` documents
every key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tandem.core.contracts import ClinicContract
from tandem.synth.options import GenerateOptions

Format = Literal["canonical_csv", "redcap_csv", "fhir_ndjson", "excel"]
Family = Literal["ORS", "PHQ"]

FORMATS: tuple[Format, ...] = ("canonical_csv", "redcap_csv", "fhir_ndjson", "excel")
INSTRUMENTS: dict[Family, tuple[str, ...]] = {
    "ORS": ("ORS", "SRS", "WAISR", "COLLABORATE", "PRACTICE"),
    "PHQ": ("PHQ9", "GAD7", "WAISR", "COLLABORATE", "PRACTICE"),
}
N_ITEMS = {"ORS": 4, "SRS": 4, "PHQ9": 9, "GAD7": 7, "WAISR": 12, "COLLABORATE": 3, "PRACTICE": 6}
# Instruments with one decimal (visual analogue scales): scores are held in tenths.
TENTHS = frozenset({"ORS", "SRS"})
EXCEL_MAX_CLIENTS = 150
# Therapist ids never on any roster (the "unknown therapist" fault draws from these).
UNKNOWN_THERAPISTS = ("T000", "LOCUM", "TBC")

_NAMES = (
    "northside", "riverbend", "lakeside", "hillcrest",
    "eastgate", "meadowbank", "harbourview", "willowbrook",
)
_PRETTY = {
    "northside": "Northside Counselling", "riverbend": "Riverbend Family Therapy",
    "lakeside": "Lakeside Talking Therapies", "hillcrest": "Hillcrest Practice",
    "eastgate": "Eastgate Counselling Service", "meadowbank": "Meadowbank Wellbeing",
    "harbourview": "Harbourview Psychological Services", "willowbrook": "Willowbrook Counselling",
}
# Surnames that need Latin-1 (the clinics whose exports are Latin-1 use login names).
_SURNAMES = (
    "müller", "garcía", "østergaard", "núñez", "dubois", "könig", "søren", "pérez",
    "lefèvre", "jäger", "brontë", "françois", "ibáñez", "strauß", "åberg", "renée",
)
_INITIALS = "abcdefghijklmnoprstvw"

ORS_LABELS = {
    "ORS": ("Individual", "Interpersonal", "Social", "Overall"),
    "SRS": ("Relationship", "Goals", "Approach", "Overall"),
}
PRACTICE_LABELS = (
    "Goals set together", "Feedback asked", "Progress reviewed",
    "Decision shared", "Cultural factors", "Family involved",
)
LOINC_ITEMS = {
    "PHQ9": ("44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5",
             "44253-3", "44260-8"),
    "GAD7": ("69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"),
}
LOINC_PANEL = {"PHQ9": "44249-1", "GAD7": "69737-5"}
LOINC_ANSWERS = ("LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9")  # 0, 1, 2, 3
LOINC_ANSWER_DISPLAY = ("Not at all", "Several days", "More than half the days",
                        "Nearly every day")
SESSION_NUMBER_URL = "https://tandem.example/fhir/StructureDefinition/session-number"


@dataclass(frozen=True)
class ClinicSpec:
    """One generated clinic: who it is, how it exports, and its therapist roster."""

    index: int
    clinic_id: str
    name: str
    format: Format
    family: Family
    encoding: str
    date_format: str
    started_on: dt.date
    n_clients: int
    therapists: tuple[str, ...]
    client_prefix: str
    style: int  # which of the format's naming styles the clinic uses (0 or 1)
    mapping: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def instruments(self) -> tuple[str, ...]:
        return INSTRUMENTS[self.family]

    def client_id(self, numbers: np.ndarray) -> np.ndarray:
        """Clinic-style client ids (``NS-004211``; REDCap record ids are plain numbers)."""
        nums = numbers.astype(np.int64).astype(str)
        if self.format == "redcap_csv":
            return nums
        return np.char.add(f"{self.client_prefix}-", np.char.zfill(nums, 6))

    def contract(self) -> ClinicContract:
        return ClinicContract(
            clinic_id=self.clinic_id,
            name=self.name,
            format=self.format,
            encoding=self.encoding,
            date_format=self.date_format,
            started_on=self.started_on,
            timezone="UTC",
            instruments=list(self.instruments),
            therapists=list(self.therapists),
            mapping=self.mapping,
        )


def _therapist_ids(n: int, names: bool, rng: np.random.Generator) -> tuple[str, ...]:
    if not names:
        width = max(2, len(str(n)))
        return tuple(f"T{k:0{width}d}" for k in range(1, n + 1))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        base = f"{_INITIALS[rng.integers(len(_INITIALS))]}{_SURNAMES[rng.integers(len(_SURNAMES))]}"
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}{k}"
        seen.add(name)
        out.append(name)
    return tuple(out)


def make_clinics(options: GenerateOptions) -> list[ClinicSpec]:
    """The clinics, in a fixed order: formats cycle so several clinics share each format."""
    rng = np.random.default_rng([options.seed, 0xC11])
    per_clinic = options.n_clients_per_clinic
    out = []
    for i in range(options.n_clinics):
        fmt = FORMATS[i % 4]
        round_ = i // len(_NAMES)
        base = _NAMES[i % len(_NAMES)]
        clinic_id = base if round_ == 0 else f"{base}{round_ + 1}"
        family: Family
        if fmt == "fhir_ndjson":
            family = "PHQ"
        elif fmt == "excel":
            family = "ORS"
        else:
            family = "ORS" if (i // 4) % 2 == 0 else "PHQ"
        # The second canonical and REDCap clinic of each eight export Latin-1.
        latin1 = options.faults.latin1_clinics and fmt in ("canonical_csv", "redcap_csv") and (
            (i // 4) % 2 == 1
        )
        # An Excel practice is small whatever the scale.
        n_clients = min(max(4, per_clinic // 4), EXCEL_MAX_CLIENTS) if fmt == "excel" else (
            per_clinic)
        n_therapists = max(3, round(n_clients / 12))
        started = options.as_of - dt.timedelta(days=int(rng.integers(540, 900)))
        spec = ClinicSpec(
            index=i,
            clinic_id=clinic_id,
            name=_PRETTY[base] + ("" if round_ == 0 else f" {round_ + 1}"),
            format=fmt,
            family=family,
            encoding="latin-1" if latin1 else "utf-8",
            date_format="%d/%m/%Y" if fmt == "excel" else "%Y-%m-%d",
            started_on=started,
            n_clients=n_clients,
            therapists=_therapist_ids(n_therapists, latin1, rng),
            client_prefix=(base[:2] if round_ == 0 else f"{base[:1]}{round_ + 1}").upper(),
            style=(i // 4) % 2,
        )
        out.append(_with_mapping(spec))
    return out


def _with_mapping(spec: ClinicSpec) -> ClinicSpec:
    build = {
        "canonical_csv": lambda s: {},
        "redcap_csv": redcap_mapping,
        "fhir_ndjson": fhir_mapping,
        "excel": excel_mapping,
    }[spec.format]
    object.__setattr__(spec, "mapping", build(spec))
    return spec


# REDCap: two naming styles, as two projects built by different people would name things.
_REDCAP_STYLES = (
    {
        "event": "session_arm_1", "date": "session_date", "therapist": "therapist_id",
        "forms": {"ORS": "ors", "SRS": "srs", "PHQ9": "phq9", "GAD7": "gad7",
                  "WAISR": "wai_sr", "COLLABORATE": "collaborate",
                  "PRACTICE": "practice_checklist"},
        "prefix": {"ORS": "ors_", "SRS": "srs_", "PHQ9": "phq9_", "GAD7": "gad7_",
                   "WAISR": "wai_", "COLLABORATE": "collab_", "PRACTICE": "practice___"},
    },
    {
        "event": "therapy_session_arm_1", "date": "visit_date", "therapist": "clinician",
        "forms": {"ORS": "outcome_rating_scale", "SRS": "session_rating_scale",
                  "PHQ9": "phq", "GAD7": "gad", "WAISR": "waisr", "COLLABORATE": "cr",
                  "PRACTICE": "practices"},
        "prefix": {"ORS": "ors_q", "SRS": "srs_q", "PHQ9": "phq_q", "GAD7": "gad_q",
                   "WAISR": "wai_q", "COLLABORATE": "cr_q", "PRACTICE": "practices___"},
    },
)


def redcap_mapping(spec: ClinicSpec) -> dict:
    st = _REDCAP_STYLES[spec.style]
    instruments = {}
    for code in spec.instruments:
        form = st["forms"][code]
        entry: dict = {
            "form": form,
            "complete": f"{form}_complete",
            "items": {n: f"{st['prefix'][code]}{n}" for n in range(1, N_ITEMS[code] + 1)},
        }
        if code == "PRACTICE":
            entry["checkbox"] = True
        instruments[code] = entry
    return {
        "record_id": "record_id",
        "event_name": "redcap_event_name",
        "session_event": st["event"],
        "repeat_instrument": "redcap_repeat_instrument",
        "session_number": "redcap_repeat_instance",
        "session_date": st["date"],
        "therapist_id": st["therapist"],
        "complete_values": {"incomplete": 0, "unverified": 1, "complete": 2},
        "instruments": instruments,
    }


def redcap_columns(mapping: dict) -> list[str]:
    cols = [
        mapping["record_id"], mapping["event_name"], mapping["repeat_instrument"],
        mapping["session_number"], mapping["session_date"], mapping["therapist_id"],
    ]
    for entry in mapping["instruments"].values():
        cols.extend(entry["items"].values())
        cols.append(entry["complete"])
    return cols


def fhir_questionnaire(spec: ClinicSpec, code: str) -> str:
    if code in LOINC_PANEL:
        return f"http://loinc.org/q/{LOINC_PANEL[code]}"
    return f"https://{spec.clinic_id}.example/fhir/Questionnaire/{code.lower()}"


def fhir_mapping(spec: ClinicSpec) -> dict:
    instruments = {}
    for code in spec.instruments:
        if code in LOINC_ITEMS:
            instruments[code] = {
                "questionnaire": fhir_questionnaire(spec, code),
                "value": "valueCoding",
                "answer_system": "http://loinc.org",
                "items": {n: link for n, link in enumerate(LOINC_ITEMS[code], start=1)},
                "answer_codes": {c: v for v, c in enumerate(LOINC_ANSWERS)},
            }
        else:
            value = "valueDecimal" if code in TENTHS else "valueInteger"
            instruments[code] = {
                "questionnaire": fhir_questionnaire(spec, code),
                "value": value,
                "items": {n: f"{code.lower()}-{n}" for n in range(1, N_ITEMS[code] + 1)},
            }
    return {
        "resource_type": "QuestionnaireResponse",
        "statuses": ["completed"],
        "client_id": {"path": "subject.reference", "prefix": "Patient/"},
        "therapist_id": {"path": "author.reference", "prefix": "Practitioner/"},
        "session_date": {"path": "authored", "type": "dateTime", "use": "date part"},
        "session_number": {"path": "extension", "url": SESSION_NUMBER_URL,
                           "value": "valueInteger"},
        "instruments": instruments,
    }


def excel_item_synonyms(code: str, n: int) -> list[str]:
    if code in ORS_LABELS:
        return [f"{code} {n}", f"{code}{n}", f"{code} {ORS_LABELS[code][n - 1]}"]
    if code == "WAISR":
        return [f"WAI {n}", f"WAI{n}", f"WAI-SR {n}"]
    if code == "COLLABORATE":
        return [f"CollaboRATE {n}", f"CR{n}", f"Collab {n}"]
    if code == "PRACTICE":
        return [PRACTICE_LABELS[n - 1], f"Practice {n}", f"P{n}"]
    return [f"{code} {n}", f"{code}{n}"]


EXCEL_COLUMNS = {
    "client_id": ["Client ID", "Client", "Client no"],
    "therapist_id": ["Therapist", "Counsellor", "Therapist ID"],
    "session_date": ["Date", "Session date", "Date of session"],
    "session_number": ["Session", "Session no", "Session #"],
}


def excel_mapping(spec: ClinicSpec) -> dict:
    return {
        "sheets": {"one_per": "month", "name_format": "%b %Y"},
        "header_row": 1,
        "header_match": "strip, casefold, collapse inner whitespace",
        "columns": {k: list(v) for k, v in EXCEL_COLUMNS.items()},
        "instruments": {
            code: {"items": {n: excel_item_synonyms(code, n)
                             for n in range(1, N_ITEMS[code] + 1)}}
            for code in spec.instruments
        },
        "date_cells": "Excel date serials; text dates use date_format",
    }
