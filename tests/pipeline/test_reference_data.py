"""Real FHIR files written by others (shared/reference-data) are read with the right outcome.

CMS159 test patients carry PHQ-9 totals as Observations (LOINC 44261-6), among them a total
of 300 and two with status "unknown"; the MII example has a PHQ-9 QuestionnaireResponse with
all nine answers and its score item, and a panel Observation with the same total.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tandem.core import warehouse

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference-data"
if not REFERENCE.exists():  # the repo checked out elsewhere
    REFERENCE = Path("/work/shared/reference-data")

CONTRACT = """\
clinic_id: reference
name: Reference FHIR data
format: fhir_ndjson
started_on: 2010-01-01
instruments: [PHQ9]
therapists: [unassigned]
mapping:
  client_id: {path: subject.reference, prefix: Patient/}
  therapist_id: {path: author.reference, prefix: Practitioner/, default: unassigned}
  session_date: {path: authored, type: dateTime}
  session_number: {derive: date_order}
  instruments:
    PHQ9:
      questionnaire: Questionnaire/mii-qst-pro-phq-9
      items: {1: PHQ.1, 2: PHQ.2, 3: PHQ.3, 4: PHQ.4, 5: PHQ.5, 6: PHQ.6, 7: PHQ.7, 8: PHQ.8,
              9: PHQ.9}
      total: {linkId: PHQ.Score}
"""

pytestmark = pytest.mark.skipif(not REFERENCE.exists(), reason="reference data not present")


def _bulk_export(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """All resources as one NDJSON file (as a Bulk Data export would hold them)."""
    lines, kinds = [], {}
    for path in sorted(REFERENCE.glob("fhir-*/**/*.json")):
        res = json.loads(path.read_text(encoding="utf-8"))
        if res.get("resourceType") in ("Questionnaire", "ValueSet"):
            continue  # definitions, not data
        lines.append(json.dumps(res))
        kinds[str(len(lines))] = f"{res['resourceType']}/{res.get('id')}"
    out = tmp_path / "reference.ndjson"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, kinds


def test_reference_fhir_is_read_with_the_right_outcome_per_resource(tandem_home, tmp_path):
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.pipeline.ingest import IngestRun, process_file

    (tandem_home.local_contracts_dir / "clinics" / "reference.yaml").write_text(CONTRACT)
    path, _ = _bulk_export(tmp_path)
    result = process_file(path, IngestRun(
        settings=tandem_home, contracts=load_clinic_contracts(tandem_home),
        instruments=load_instruments(tandem_home), key=b"k", clinic_hint="reference",
        as_of=dt.date(2030, 1, 1)))
    assert result.status == "loaded", result.reason
    assert result.accounted
    assert "ignored" in result.reason and "Patient" in result.reason  # not outcome data

    con = warehouse.connect(tandem_home, read_only=True)
    quarantined = con.execute(
        "SELECT rule, reason FROM quarantine ORDER BY rule, reason").fetchall()
    rules = [r for r, _ in quarantined]
    # The two totals of 300 and the two Observations with status "unknown".
    assert rules.count("total_in_range[PHQ9]") == 2
    assert rules.count("record_readable") == 2
    assert len(rules) == 4
    assert all("300 is outside the total range 0-27" in reason
               for rule, reason in quarantined if rule.startswith("total_in_range"))
    assert all("status 'unknown'" in reason
               for rule, reason in quarantined if rule == "record_readable")

    # Every other PHQ-9 total Observation (final, 0-27) loads as a reported total.
    totals = con.execute("SELECT count(*), min(total), max(total) FROM reported_total").fetchone()
    assert totals[0] >= 100 and totals[1] >= 0 and totals[2] <= 27
    # The MII QuestionnaireResponse: nine answers of 3, and a score of 27 that matches them.
    items = con.execute(
        "SELECT count(*), sum(score) FROM response WHERE instrument = 'PHQ9'").fetchone()
    assert items == (9, 27.0)
    [(total, items_total)] = con.execute(
        "SELECT total, items_total FROM reported_total WHERE items_total IS NOT NULL"
    ).fetchall()
    assert total == items_total == 27
    assert (result.rows_received
            == result.rows_loaded + result.rows_quarantined + result.rows_duplicate)


def test_total_that_disagrees_with_its_items_is_quarantined(tandem_home, tmp_path):
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.pipeline.ingest import IngestRun, process_file

    (tandem_home.local_contracts_dir / "clinics" / "reference.yaml").write_text(CONTRACT)
    qr = json.loads((REFERENCE / "fhir-mii-proms-phq9"
                     / "QuestionnaireResponse-mii-exa-pro-phq-9-response.json").read_text())
    qr["item"][-1]["answer"][0]["valueQuantity"]["value"] = 20  # items say 27
    path = tmp_path / "qr.ndjson"
    path.write_text(json.dumps(qr) + "\n")
    result = process_file(path, IngestRun(
        settings=tandem_home, contracts=load_clinic_contracts(tandem_home),
        instruments=load_instruments(tandem_home), key=b"k", clinic_hint="reference",
        as_of=dt.date(2030, 1, 1)))
    assert (result.rows_received, result.rows_quarantined, result.rows_loaded) == (10, 10, 0)
    con = warehouse.connect(tandem_home, read_only=True)
    [(rule, reason, n)] = con.execute(
        "SELECT rule, reason, rows_set_aside FROM quarantine").fetchall()
    assert rule == "total_consistent_with_items[PHQ9]"
    assert reason == "the reported PHQ9 total 20 does not match its items, which score 27"
    assert n == 10  # the whole questionnaire is set aside, not half of it
