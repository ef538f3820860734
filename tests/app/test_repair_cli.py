"""The quality team's repair tools as a user runs them: ``tandem status``, ``tandem
quarantine list|show``, ``tandem reprocess`` and ``tandem republish`` (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.test_cli_conventions import assert_sentence, error_line, run
from tests.conftest import CLINIC_CONTRACT, HEADER, canonical_rows


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "data_contracts" / "clinics").mkdir(parents=True)
    (home / "data_contracts" / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    return home


def _late_file(folder: Path) -> Path:
    path = folder / "ns_late.csv"
    path.write_text(HEADER
                    + canonical_rows("A", "T01", "2026-01-05", 1, "ORS", [5, 6, 7, 8])
                    + canonical_rows("B", "T07", "2026-01-06", 1, "ORS", [4, 4, 4, 4]))
    return path


def test_status_quarantine_reprocess_and_republish(home: Path, tmp_path: Path):
    proc = run(home, "republish", "--as-of", "2026-01-31")
    assert proc.returncode == 4, proc.stderr
    assert_sentence(error_line(proc))

    assert run(home, "ingest", str(_late_file(tmp_path))).returncode == 0
    status = json.loads(run(home, "status", "--json").stdout)
    [clinic] = status["clinics"]
    assert clinic["last_file"]["source_name"] == "ns_late.csv"
    assert clinic["quarantine"] == {"known_therapist": 4}
    assert status["marts"] is None

    groups = json.loads(run(home, "quarantine", "list", "--reason", "known_therapist",
                            "--json").stdout)
    assert [(g["reason"], g["administrations"]) for g in groups] == [("known_therapist", 4)]
    batch = groups[0]["batch_id"]
    assert json.loads(run(home, "quarantine", "list", "--reason", "score_in_item_range",
                          "--json").stdout) == []
    shown = run(home, "quarantine", "show", str(batch))
    assert shown.returncode == 0 and "therapist 'T07' is not on the clinic's roster" in shown.stdout
    missing = run(home, "quarantine", "show", "999")
    assert missing.returncode == 2 and "no batch 999" in error_line(missing)
    unknown = run(home, "quarantine", "list", "--clinic", "nowhere")
    assert unknown.returncode == 2

    # before the fix: nothing changes, no batch is made
    same = run(home, "reprocess", "--json")
    assert [r["status"] for r in json.loads(same.stdout)] == ["unchanged"]

    contract = home / "data_contracts" / "clinics" / "northside.yaml"
    contract.write_text(CLINIC_CONTRACT.replace("[T01, T02]", "[T01, T02, T07]"))
    done = run(home, "reprocess")
    assert done.returncode == 0, done.stderr
    assert "4 administrations loaded (4 rows" in " ".join(done.stdout.split())
    assert_sentence(done.stdout)
    again = run(home, "reprocess")
    assert again.returncode == 0 and "nothing to reprocess" in again.stdout

    status = json.loads(run(home, "status", "--json").stdout)
    assert status["clinics"][0]["quarantine"] == {}
    listed = json.loads(run(home, "quarantine", "list", "--all", "--json").stdout)
    assert [g["resolved"] for g in listed] == [4]
    assert run(home, "aggregate").returncode == 0
    text = " ".join(run(home, "status").stdout.split())
    assert "nothing quarantined" in text and "They include every batch." in text

    hist = run(home, "republish", "--as-of", "2026-01-05")
    assert hist.returncode == 0, hist.stderr
    assert "as of 2026-01-05" in hist.stdout and "of 1 client" in " ".join(hist.stdout.split())
