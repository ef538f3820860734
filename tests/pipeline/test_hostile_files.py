"""One file never takes down a run (issue 17, items 1-3, 6-8): through the whole ingest.

A workbook that makes the Excel parser abort, a zip bomb, files that are not deliveries,
a reader that raises or aborts, links and pipes, a 20 MB value, a Latin-1 byte: each
ends as its own batch (or is skipped) with a reason that names no contents, and the
other files of the same run load.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from tandem.core import warehouse
from tandem.core.contracts import ClinicContract, write_clinic_contract
from tandem.core.settings import Settings
from tandem.pipeline.ingest import IngestRun, process_files
from tests.conftest import HEADER, REPO_ROOT, canonical_rows
from tests.reliability.helpers import AS_OF
from tests.reliability.xlsx_factory import stray_cell_xlsx, string_bomb_xlsx


def _run(settings: Settings) -> IngestRun:
    return IngestRun.load(settings, as_of=AS_OF)


def _csv(path: Path, client: str = "C1", extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + canonical_rows(client, "T01", "2025-03-02", 1, "ORS",
                                            [5, 6, 7, 8]) + extra)
    return path


def _excel_contract(settings: Settings) -> ClinicContract:
    from tandem.synth.clinics import make_clinics
    from tandem.synth.options import GenerateOptions

    opts = GenerateOptions(out=None, clinics=4, clients_per_clinic=8, as_of=AS_OF)
    contract = next(s for s in make_clinics(opts) if s.format == "excel").contract()
    write_clinic_contract(contract, settings.local_contracts_dir / "clinics")
    return contract


def _period_sheet(contract: ClinicContract) -> str:
    """A sheet name the contract reads (a period sheet), so the reader parses the sheet."""
    fmt = (contract.mapping.get("sheets") or {}).get("name_format") or "%b %Y"
    return dt.date(2026, 3, 1).strftime(fmt)


def _workbook(contract: ClinicContract) -> bytes:
    """A small valid workbook for the contract: one session, every item answered."""
    import xlsxwriter

    mp = contract.mapping
    cols = mp.get("columns") or {}
    headers = [(cols.get(k) or [k])[0] for k in
               ("client_id", "therapist_id", "session_date", "session_number")]
    values: list = ["HI-000001", contract.therapists[0],
                    dt.date(2026, 3, 2).strftime(contract.date_format), 1]
    for entry in mp["instruments"].values():
        for synonyms in entry["items"].values():
            headers.append(synonyms[0] if isinstance(synonyms, list) else synonyms)
            values.append(1)
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    ws = wb.add_worksheet(_period_sheet(contract))
    ws.write_row(0, 0, headers)
    ws.write_row(1, 0, values)
    wb.close()
    return buf.getvalue()


def _child(settings: Settings, *paths: Path) -> tuple[int, list[dict], int]:
    """process_files in a child process: (exit status, results, peak RSS in kB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.update(TANDEM_HOME=str(settings.home_dir), TANDEM_PSEUDONYM_KEY="test-only-key",
               PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "tests.pipeline.ingest_files_child",
                           *map(str, paths)], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    peak = [int(line.split()[1]) for line in proc.stdout.splitlines()
            if line.startswith("PEAK_KB ")]
    return proc.returncode, results, peak[0] if peak else 0


# --- 1. a workbook that makes the parser abort ----------------------------------------------

def test_a_stray_far_cell_fails_its_workbook_alone_and_the_run_goes_on(tandem_home, tmp_path):
    """An 8 KB workbook with a cell at XFD1048576 made fastexcel ask for 512 GiB and abort
    the process (exit 134): no batch record, the valid workbook of the same run not loaded."""
    contract = _excel_contract(tandem_home)
    folder = tmp_path / contract.clinic_id
    folder.mkdir()
    stray = folder / "march.xlsx"
    stray.write_bytes(stray_cell_xlsx(sheet=_period_sheet(contract)))
    good = folder / "april.xlsx"
    good.write_bytes(_workbook(contract))
    csv = _csv(tmp_path / "northside" / "feb.csv")
    status, results, _ = _child(tandem_home, stray, good, csv)
    assert status == 0, f"the ingest process died (status {status})"
    by_name = {r["source_name"]: r for r in results}
    assert by_name["march.xlsx"]["status"] == "failed"
    reason = by_name["march.xlsx"]["reason"]
    assert "XFD1048576" in reason and "stray cell" in reason, reason
    assert by_name["april.xlsx"]["status"] == "loaded"
    assert by_name["feb.csv"]["status"] == "loaded"
    with warehouse.reader(tandem_home) as con:
        assert con.execute("SELECT count(*) FROM batch").fetchone()[0] == 3


# --- 2. a zip bomb ------------------------------------------------------------------------------

def test_a_zip_bomb_is_refused_before_parsing_with_a_reason_and_a_small_peak(tandem_home,
                                                                               tmp_path):
    """1 MB of workbook, 1 GiB of sheet XML: refused from the zip directory's sizes (it
    loaded before, at several times the memory of a normal workbook)."""
    contract = _excel_contract(tandem_home)
    folder = tmp_path / contract.clinic_id
    folder.mkdir()
    bomb = folder / "bomb.xlsx"
    bomb.write_bytes(string_bomb_xlsx(1 << 30, sheet=_period_sheet(contract)))
    assert bomb.stat().st_size < 2_000_000
    good = folder / "april.xlsx"
    good.write_bytes(_workbook(contract))
    status, results, peak_kb = _child(tandem_home, bomb, good)
    assert status == 0
    by_name = {r["source_name"]: r for r in results}
    assert by_name["bomb.xlsx"]["status"] == "failed"
    assert "unpacks to 1.1 GB" in by_name["bomb.xlsx"]["reason"], by_name["bomb.xlsx"]
    assert by_name["april.xlsx"]["status"] == "loaded"
    assert peak_kb < 1_000_000, f"peak {peak_kb / 1e6:.1f} GB"


# --- 3. files that are not deliveries; a reader that raises or aborts --------------------------

def test_a_generated_data_set_folder_skips_what_is_not_a_delivery(tmp_path):
    """`tandem generate --out D && tandem ingest D`: contracts, the manifest and the truth
    are skipped with a reason (they crashed the whole run: 'clinic_id' is not in list)."""
    from tandem.pipeline.deliveries import expand

    d = tmp_path / "D"
    for rel in ("files/northside/northside_2025-01.csv", "files/lakeside/l.ndjson",
                "files/hillside/q1.xlsx", "data_contracts/clinics/northside.yaml",
                "manifest.json", "truth_episodes.parquet", "README.md", "files/x/~$q1.xlsx"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text("x")
    found = expand([d])
    assert [p.relative_to(d).as_posix() for p in found.files] == [
        "files/hillside/q1.xlsx", "files/lakeside/l.ndjson",
        "files/northside/northside_2025-01.csv"]
    skipped = {p.relative_to(d).as_posix(): why for p, why in found.skipped}
    assert set(skipped) == {"data_contracts/clinics/northside.yaml", "manifest.json",
                            "truth_episodes.parquet", "README.md", "files/x/~$q1.xlsx"}
    assert "clinic contract" in skipped["data_contracts/clinics/northside.yaml"]


def test_files_that_are_not_deliveries_fail_alone_when_named(tandem_home, tmp_path):
    """Named on their own (or dropped in an inbox), they are tried and fail with a reason;
    the delivery beside them loads. Before: the contract YAML's head crashed the run."""
    yaml = tmp_path / "data_contracts" / "clinics" / "northside.yaml"
    yaml.parent.mkdir(parents=True)
    yaml.write_text("clinic_id: northside\nname: Northside\nformat: canonical_csv\n")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"clinic_id": "northside", "files": []}))
    parquet = tmp_path / "truth.parquet"
    pl.DataFrame({"clinic_id": ["northside"]}).write_parquet(parquet)
    binary = tmp_path / "junk.csv"
    binary.write_bytes(b"clinic_id\x00\xff\xfe" + os.urandom(2000))
    csv = _csv(tmp_path / "northside" / "feb.csv")
    results = process_files([yaml, manifest, parquet, binary, csv], _run(tandem_home))
    assert [r.status for r in results] == ["failed"] * 4 + ["loaded"]
    assert all(r.reason for r in results[:4])
    assert "cannot tell which clinic" in results[0].reason


def test_a_reader_that_raises_fails_its_file_alone_and_quotes_nothing(tandem_home, tmp_path,
                                                                      monkeypatch):
    from tests.pipeline import misbehaving

    monkeypatch.setattr("tandem.pipeline.sources.isolated.read_stored",
                        misbehaving.read_stored)
    folder = tmp_path / "northside"
    paths = [_csv(folder / "a.csv", "C1"), _csv(folder / "raises.csv", "C2"),
             _csv(folder / "panics.csv", "C3"), _csv(folder / "b.csv", "C4")]
    results = process_files(paths, _run(tandem_home))
    assert [r.status for r in results] == ["loaded", "failed", "failed", "loaded"]
    assert "ValueError" in results[1].reason and "FakePanic" in results[2].reason
    assert not any("Jane" in r.reason or "1980" in r.reason for r in results[1:3])


def test_a_reader_that_aborts_the_process_fails_its_file_alone(tandem_home, tmp_path,
                                                                monkeypatch):
    """os.abort() in the reader (as fastexcel does on a failed allocation): the worker dies,
    the file fails with the signal named, a fresh worker reads the next file."""
    from tests.pipeline import misbehaving

    monkeypatch.setattr("tandem.pipeline.sources.isolated.read_stored",
                        misbehaving.read_stored)
    folder = tmp_path / "northside"
    paths = [_csv(folder / "a.csv", "C1"), _csv(folder / "aborts.csv", "C2"),
             _csv(folder / "b.csv", "C3")]
    results = process_files(paths, _run(tandem_home))
    assert [r.status for r in results] == ["loaded", "failed", "loaded"]
    assert "crashed (SIGABRT)" in results[1].reason, results[1].reason
    with warehouse.reader(tandem_home) as con:
        assert con.execute("SELECT count(*) FROM batch").fetchone()[0] == 3


def test_a_reader_that_hangs_is_stopped_and_its_file_fails(tandem_home, tmp_path,
                                                           monkeypatch):
    from tests.pipeline import misbehaving

    monkeypatch.setattr("tandem.pipeline.sources.isolated.read_stored",
                        misbehaving.read_stored)
    monkeypatch.setenv("TANDEM_READER_TIMEOUT_SECONDS", "3")
    folder = tmp_path / "northside"
    paths = [_csv(folder / "hangs.csv", "C1"), _csv(folder / "b.csv", "C2")]
    results = process_files(paths, _run(Settings()))
    assert [r.status for r in results] == ["failed", "loaded"]
    assert "longer than 3 s" in results[0].reason


# --- 6. links and special files -----------------------------------------------------------------

def test_a_link_or_a_pipe_given_to_the_ingest_is_refused_unread(tandem_home, tmp_path):
    """A link to a readable file outside (here a valid CSV) is neither loaded nor copied;
    a FIFO does not block the run."""
    outside = _csv(tmp_path / "outside" / "secret.csv", "SECRET-1")
    folder = tmp_path / "northside"
    folder.mkdir()
    link = folder / "passwd.csv"
    link.symlink_to(outside)
    fifo = folder / "pipe.csv"
    os.mkfifo(fifo)
    good = _csv(folder / "feb.csv")
    results = process_files([link, fifo, good], _run(tandem_home))
    assert [r.status for r in results] == ["failed", "failed", "loaded"]
    assert "symbolic link" in results[0].reason and "named pipe" in results[1].reason
    assert results[0].rows_received == 0
    kept = [p for p in tandem_home.received_dir.rglob("*") if p.is_file()]
    assert all(p.read_bytes() != outside.read_bytes() for p in kept)
    with warehouse.reader(tandem_home) as con:
        stored = con.execute("SELECT stored_path FROM batch ORDER BY batch_id").fetchall()
    assert not Path(stored[0][0]).exists()


def test_folders_given_to_tandem_ingest_list_links_and_pipes_as_skipped(tmp_path):
    from tandem.app.ingest_cli import expand_paths

    outside = _csv(tmp_path / "outside" / "secret.csv")
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "link.csv").symlink_to(outside)
    (d / "linked-folder").symlink_to(outside.parent, target_is_directory=True)
    os.mkfifo(d / "sub" / "pipe.csv")
    real = _csv(d / "sub" / "real.csv")
    reported: list = []
    assert expand_paths([d], report=reported.extend) == [real]
    why = {p.name: r for p, r in reported}
    assert set(why) == {"link.csv", "linked-folder", "pipe.csv"}
    assert "symbolic link" in why["link.csv"] and "symbolic link" in why["linked-folder"]
    assert "named pipe" in why["pipe.csv"]
    # named on its own: a link or a pipe is still never opened
    reported.clear()
    assert expand_paths([d / "link.csv", d / "sub" / "pipe.csv"], report=reported.extend) == []
    assert len(reported) == 2


# --- 7. a 20 MB value ---------------------------------------------------------------------------

def test_a_20_mb_value_is_cut_in_the_quarantine_and_says_so(tandem_home, tmp_path):
    huge = "9" * 20_000_000
    data = HEADER + canonical_rows("C1", "T01", "2025-03-02", 1, "ORS", [5, 6, 7, 8]) \
        + f"northside,C2,T01,2025-03-02,1,ORS,1,{huge}\n"
    path = tmp_path / "northside" / "big.csv"
    path.parent.mkdir()
    path.write_text(data)
    [result] = process_files([path], _run(tandem_home))
    assert result.status == "loaded" and result.rows_quarantined == 1
    with warehouse.reader(tandem_home) as con:
        rows = con.execute("SELECT rule, reason, raw_values FROM quarantine").fetchall()
    assert rows
    for rule, reason, raw in rows:
        assert len(reason) < 5_000 and len(raw) < 5_000, (rule, len(reason), len(raw))
    reasons = " ".join(r[1] for r in rows)
    assert "[cut: 20,000,000 characters]" in reasons
    assert any(r[0] == "record_readable" and "score (20,000,000 characters)" in r[1]
               for r in rows)


# --- 8. reasons name positions, never contents -------------------------------------------------

def test_a_latin1_byte_in_a_utf8_file_is_named_by_position(tandem_home, tmp_path):
    """Before: ``... (byte 95: b'\\xeb-77')``, a fragment of a client id, in batch.reason."""
    data = (HEADER + "northside,C1,T01,2025-03-02,1,ORS,1,5\n").encode() \
        + b"northside,NS-\xeb-7781,T01,2025-03-02,1,ORS,1,5\n"
    path = tmp_path / "northside" / "latin1.csv"
    path.parent.mkdir()
    path.write_bytes(data)
    [result] = process_files([path], _run(tandem_home))
    assert result.status == "failed"
    pos = data.index(b"\xeb") + 1
    assert f"byte {pos:,} (line 3, column 14)" in result.reason, result.reason
    assert "7781" not in result.reason and "\\x" not in result.reason
    assert "Windows-1252" in result.reason
