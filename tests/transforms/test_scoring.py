"""Scores per administration follow the instrument definitions (YAML)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.transforms.conftest import answers, frame
from transforms.scoring import score_administrations

# shared/ lies beside the clone (CI); /work/shared on a developer's machine.
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference-data"
if not REFERENCE.exists():
    REFERENCE = Path("/work/shared/reference-data")


def total(instruments, code, scores):
    out = score_administrations(frame(answers(code, scores)), instruments)
    assert out.height == 1
    return out.row(0, named=True)


def test_hl7_phq9_worked_example_totals_3(instruments):
    """HL7 personal health record IG: PHQ-9 answers 0,0,1,1,1,0,0,0,0 -> total 3."""
    assert total(instruments, "PHQ9", [0, 0, 1, 1, 1, 0, 0, 0, 0])["total"] == 3


def test_hl7_gad7_worked_example_totals_3(instruments):
    """HL7 personal health record IG: GAD-7 answers 0,0,1,1,0,1,0 -> total 3."""
    assert total(instruments, "GAD7", [0, 0, 1, 1, 0, 1, 0])["total"] == 3


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference data not mounted")
def test_mii_questionnaire_response_answer_codes_score_27(instruments):
    """MII PROMs example: all nine answers LA6571-9 and its stated PHQ.Score 27."""
    path = REFERENCE / "fhir-mii-proms-phq9/QuestionnaireResponse-mii-exa-pro-phq-9-response.json"
    qr = json.loads(path.read_text())
    codes = instruments["PHQ9"].answer_codes
    scores = [codes[i["answer"][0]["valueCoding"]["code"]] for i in qr["item"][:9]]
    stated = qr["item"][-1]["answer"][0]["valueQuantity"]["value"]
    assert total(instruments, "PHQ9", scores)["total"] == stated == 27


def test_phq9_without_prorating_a_missing_item_gives_no_total(instruments):
    """NHS TT records the PHQ-9 only from a complete form (max_missing_items 0)."""
    row = total(instruments, "PHQ9", [1, 1, 1, 1, 1, 1, 1, 1, None])
    assert row["total"] is None and row["n_items"] == 8 and row["prorated"] is False


def test_ors_is_sum_of_four_marks_and_needs_all(instruments):
    assert total(instruments, "ORS", [5.5, 6.0, 7.1, 8.0])["total"] == pytest.approx(26.6)
    assert total(instruments, "ORS", [5.5, 6.0, 7.1, None])["total"] is None


def test_prorating_when_allowed_is_mean_of_answered_times_items(instruments):
    """A sum instrument that allows 1 missing item: total = mean(answered) x n_items."""
    phq = instruments["PHQ9"]
    lenient = phq.model_copy(
        update={"scoring": phq.scoring.model_copy(update={"max_missing_items": 1})}
    )
    out = score_administrations(
        frame(answers("PHQ9", [2, 2, 2, 2, 1, 1, 1, 1, None])), {"PHQ9": lenient}
    ).row(0, named=True)
    assert out["total"] == pytest.approx(12 / 8 * 9) and out["prorated"] is True
    two_missing = score_administrations(
        frame(answers("PHQ9", [2, 2, 2, 2, 1, 1, 1, None, None])), {"PHQ9": lenient}
    )
    assert two_missing["total"][0] is None


def test_wai_sr_subscales_task_bond_goal(instruments):
    """Hatcher & Gillaspy 2006: Task 1,2,10,12; Bond 3,5,7,9; Goal 4,6,8,11."""
    scores = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]  # item i has this score
    row = total(instruments, "WAISR", scores)
    assert row["total"] == sum(scores)
    assert row["sub_task"] == 1 + 2 + 5 + 2
    assert row["sub_bond"] == 3 + 5 + 2 + 4
    assert row["sub_goal"] == 4 + 1 + 3 + 1


def test_collaborate_mean_and_top_score(instruments):
    """CollaboRATE: mean of 3 items; top score only when all three are 9 (Barr et al. 2014)."""
    top = total(instruments, "COLLABORATE", [9, 9, 9])
    assert top["total"] == 9 and top["top_score"] is True
    near = total(instruments, "COLLABORATE", [9, 9, 8])
    assert near["total"] == pytest.approx(26 / 3) and near["top_score"] is False
    assert total(instruments, "ORS", [1, 1, 1, 1])["top_score"] is None


def test_practice_checklist_missing_item_is_not_reported(instruments):
    """PRACTICE allows every item missing; the count of practices is prorated."""
    row = total(instruments, "PRACTICE", [1, 0, 1, None, None, None])
    assert row["n_items"] == 3 and row["total"] == pytest.approx(2 / 3 * 6)


def test_a_resent_item_keeps_the_newest_batch(instruments):
    rows = answers("GAD7", [0] * 7, batch=1) + answers("GAD7", [1] * 7, batch=2)
    out = score_administrations(frame(rows), instruments)
    assert out.height == 1 and out["total"][0] == 7 and out["batch_ids"][0].to_list() == [2]


def test_unknown_items_and_instruments_are_ignored(instruments):
    rows = answers("GAD7", [1] * 8) + answers("CORE10", [1] * 10)
    out = score_administrations(frame(rows), instruments)
    assert out["instrument"].to_list() == ["GAD7"] and out["total"][0] == 7
