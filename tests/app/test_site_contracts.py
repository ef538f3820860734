"""A site's instruments and clinic contracts beside the shipped ones (issue 18, item 2):
added to them, a site file with a shipped code wins and says so, ``tandem contracts
check|install`` validate and say what changes, and ``generate --out`` says how to install."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tandem.core.contracts import ContractError, load_clinic_contracts, load_instruments
from tandem.core.settings import Settings
from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT, canonical_rows

SHIPPED = Path(REPO_ROOT) / "data_contracts" / "instruments"


def tandem(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_API"))}
    env.update(TANDEM_HOME=str(home), TANDEM_PSEUDONYM_KEY="test-only-key", COLUMNS="80",
               PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "tandem.app.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=home.parent)


def site_instrument(settings: Settings, code: str, **changes) -> Path:
    """A site instrument: a copy of the shipped ORS under ``code``, with ``changes``."""
    data = yaml.safe_load((SHIPPED / "ORS.yaml").read_text())
    data.update(code=code, **changes)
    folder = settings.local_contracts_dir / "instruments"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{code}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_site_instruments_are_added_and_a_shipped_code_is_replaced_with_a_warning(
        tandem_home, caplog):
    shipped = load_instruments(tandem_home)
    site_instrument(tandem_home, "ORSX", name="Outcome Rating Scale, site edition")
    with caplog.at_level(logging.WARNING, logger="tandem.contracts"):
        found = load_instruments(tandem_home)
    assert set(found) == set(shipped) | {"ORSX"}
    assert not caplog.records  # an addition is not worth a warning

    path = site_instrument(tandem_home, "ORS", name="ORS as this site scores it")
    with caplog.at_level(logging.WARNING, logger="tandem.contracts"):
        found = load_instruments(tandem_home)
    assert found["ORS"].name == "ORS as this site scores it"
    assert [r.getMessage() for r in caplog.records] == [
        f"the site's instrument ORS ({path}) replaces the shipped definition"]
    # shipped only, on request; and an edit is read again (no stale cache)
    assert load_instruments(tandem_home, include_site=False)["ORS"] == shipped["ORS"]
    site_instrument(tandem_home, "ORS", name="edited")
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    assert load_instruments(tandem_home)["ORS"].name == "edited"


def test_a_broken_site_contract_names_itself_in_sentences(tandem_home):
    clinics = tandem_home.local_contracts_dir / "clinics"
    (clinics / "broken.yaml").write_text(CLINIC_CONTRACT.replace("started_on: 2024-01-01\n", ""))
    with pytest.raises(ContractError) as err:
        load_clinic_contracts(tandem_home)
    assert err.value.path == clinics / "broken.yaml"
    assert err.value.problems == ["started_on: field required."]


def test_a_site_instrument_is_used_by_ingest(tandem_home, tmp_path):
    """A clinic contract naming a site-only instrument loads its rows."""
    site_instrument(tandem_home, "ORSX")
    clinics = tandem_home.local_contracts_dir / "clinics"
    (clinics / "eastside.yaml").write_text(
        CLINIC_CONTRACT.replace("northside", "eastside").replace("Northside", "Eastside")
        .replace("[ORS, SRS, COLLABORATE, PRACTICE]", "[ORSX]"))
    path = tmp_path / "eastside_2026-01.csv"
    path.write_text(HEADER + canonical_rows("E1", "T01", "2026-01-05", 1, "ORSX", [5, 6, 7, 8],
                                            clinic="eastside"))
    proc = tandem(tandem_home.home_dir, "ingest", "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"rows_loaded": 4' in proc.stdout


def test_contracts_check_says_what_the_site_changes(tandem_home):
    site_instrument(tandem_home, "ORS", name="ORS as this site scores it")
    site_instrument(tandem_home, "ORSX")
    proc = tandem(tandem_home.home_dir, "contracts", "check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert f"Checked {tandem_home.local_contracts_dir}: 3 valid files." in text
    assert "instrument ORS: the site's file replaces the shipped one (field name differs)." \
        in text
    assert "instrument ORSX: the site's own, in effect." in text
    assert "clinic contract northside: the site's own, in effect." in text


def test_contracts_check_and_install_of_another_folder(tandem_home, tmp_path):
    new = tmp_path / "incoming"
    (new / "clinics").mkdir(parents=True)
    (new / "clinics" / "northside.yaml").write_text(
        CLINIC_CONTRACT.replace("[T01, T02]", "[T01, T02, T03]"))
    (new / "clinics" / "southbank.yaml").write_text(
        CLINIC_CONTRACT.replace("northside", "southbank").replace("Northside", "Southbank"))
    (new / "clinics" / "westend.yaml").write_text(
        CLINIC_CONTRACT.replace("northside", "westend").replace("ORS, SRS", "ORS, NOPE"))
    proc = tandem(tandem_home.home_dir, "contracts", "check", str(new))
    assert proc.returncode == 3
    text = " ".join(proc.stdout.split())
    assert "clinic contract northside: would replace the one in effect (field therapists " \
           "differs)." in text
    assert "clinic contract southbank: new." in text
    assert "clinics/westend.yaml: names 1 instrument that no contract defines: NOPE." in text
    proc = tandem(tandem_home.home_dir, "contracts", "install", str(new))
    assert proc.returncode == 3 and "nothing installed" in " ".join(proc.stderr.split())
    (new / "clinics" / "westend.yaml").unlink()

    proc = tandem(tandem_home.home_dir, "contracts", "install", str(new))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "northside.yaml would replace installed contracts with other content; nothing " \
           "installed." in " ".join(proc.stderr.split())
    assert not (tandem_home.local_contracts_dir / "clinics" / "southbank.yaml").exists()
    proc = tandem(tandem_home.home_dir, "contracts", "install", "--force", str(new))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installed = load_clinic_contracts(tandem_home)
    assert installed["northside"].therapists == ["T01", "T02", "T03"]
    assert "southbank" in installed


def test_generate_out_says_how_to_install_and_the_default_installs(tmp_path):
    home = tmp_path / "home"
    out = tmp_path / "set"
    proc = tandem(home, "generate", "--clinics", "2", "--clients-per-clinic", "5", "--out",
                  str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Its clinic contracts are not installed yet. Install them with:\n" \
           f"  tandem contracts install {out / 'data_contracts'}" in proc.stderr
    assert not list((home / "data_contracts" / "clinics").glob("*.yaml"))
    proc = tandem(home, "contracts", "install", str(out / "data_contracts"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = tandem(home, "ingest", "--quiet", str(out / "files"))
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr  # planted faults may fail files
    assert "loaded" in proc.stdout and "no contract" not in proc.stdout

    home2 = tmp_path / "home2"
    proc = tandem(home2, "generate", "--clinics", "2", "--clients-per-clinic", "5")
    assert proc.returncode == 0, proc.stderr
    assert "Its clinic contracts are installed in" in " ".join(proc.stderr.split())
    assert len(list((home2 / "data_contracts" / "clinics").glob("*.yaml"))) == 2
