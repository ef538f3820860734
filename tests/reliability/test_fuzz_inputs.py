"""Bad input, property-based: every reader and contract, fed mutated files, never crashes.

Generic over ``tandem.pipeline.sources.reader_for(format)``: every format a generated clinic uses
is fuzzed, so a new reader is covered as soon as ``tandem.synth`` writes its files.

- Reader level (fast, many cases): a reader returns canonical rows or raises
  ``SourceError`` with a reason, within a time bound.
- Pipeline level (``tandem.pipeline.ingest.process_file`` with the real GX contract): every file
  ends as a batch that loaded, quarantined or failed with a reason; the accounting
  identity holds against the warehouse; the kept copy stays under ``received/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tandem.core.contracts import load_clinic_contracts
from tandem.core.settings import Settings
from tandem.pipeline.sources import SourceError, reader_for, split_notes
from tests.reliability import fuzz_inputs as fz
from tests.reliability import helpers as h
from transforms.staging import CANONICAL_COLUMNS

READER_EXAMPLES = int(os.environ.get("TANDEM_FUZZ_READER_EXAMPLES", "120"))
PIPELINE_EXAMPLES = int(os.environ.get("TANDEM_FUZZ_PIPELINE_EXAMPLES", "10"))
READER_SECONDS = 10  # per example: a hang fails the test instead of stalling CI
PIPELINE_SECONDS = 60
FUZZ = dict(derandomize=True, deadline=None, database=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                   HealthCheck.function_scoped_fixture,
                                   HealthCheck.large_base_example])
OUTCOMES: Counter = Counter()  # (level, format, outcome) -> cases, for docs/reliability.md


@contextlib.contextmanager
def time_limit(seconds: float):
    """Fail (not hang) if the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"took longer than {seconds}s: a hang")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _seeds(corpus: Path) -> dict[str, tuple[object, list[Path]]]:
    """Per format: one generated clinic's contract and its (clean) files."""
    contracts = load_clinic_contracts(Settings(home=corpus))  # corpus/data_contracts/clinics
    out: dict[str, tuple[object, list[Path]]] = {}
    for clinic_id, contract in sorted(contracts.items()):
        files = sorted((corpus / "files" / clinic_id).glob("*"))
        if files and contract.format not in out:
            out[contract.format] = (contract, files)
    return out


FORMATS = ["canonical_csv", "redcap_csv", "fhir_ndjson", "excel"]


@pytest.fixture(scope="module")
def seeds(corpus) -> dict:
    found = _seeds(corpus)
    assert set(FORMATS) <= set(found), f"the generator no longer writes {set(FORMATS) - set(found)}"
    return {fmt: (contract, _readable(fmt, contract, files)) for fmt, (contract, files)
            in found.items()}


def _readable(fmt: str, contract, files: list[Path]) -> list[Path]:
    """The files its reader accepts (the generator plants truncated and drifted ones)."""
    ok = []
    for f in files:
        with contextlib.suppress(SourceError):
            reader_for(fmt)(f.read_bytes(), contract, f.name)
            ok.append(f)
    assert ok, f"no readable {fmt} file generated"
    return ok


def _smallest(files: list[Path]) -> bytes:
    return min((f.read_bytes() for f in files), key=len)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_reader_returns_rows_or_a_reason_for_any_mutated_file(seeds, fmt):
    contract, files = seeds[fmt]
    reader = reader_for(fmt)
    seed = _smallest(files)

    @settings(max_examples=READER_EXAMPLES, **FUZZ)
    @given(data=fz.mutations_for(fmt, seed, contract.encoding), name=fz.FILE_NAMES)
    def check(data: bytes, name: str) -> None:
        with time_limit(READER_SECONDS):
            try:
                frame, notes = split_notes(reader(data, contract, name))
            except SourceError as exc:
                assert str(exc).strip(), "a failed file needs a reason"
                OUTCOMES["reader", fmt, "failed with reason"] += 1
                return
        assert isinstance(frame, pl.DataFrame)
        assert set(CANONICAL_COLUMNS) <= set(frame.columns) and "source_row" in frame.columns
        assert all(frame[c].dtype == pl.String for c in CANONICAL_COLUMNS if c in frame.columns
                   and frame[c].dtype != pl.Null)
        assert all(isinstance(n, str) for n in notes)
        OUTCOMES["reader", fmt, "rows"] += 1

    check()


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory, corpus) -> h.Pipeline:
    home = Settings(home=tmp_path_factory.mktemp("fuzz") / "home")
    home.ensure_dirs()
    h.install_contracts(home, corpus)
    return h.Pipeline(home)


def check_outcome(pipe: h.Pipeline, path: Path, clinic: str | None, fmt: str) -> str:
    """Run one file through the whole ingest and check what it left behind."""
    with time_limit(PIPELINE_SECONDS):
        result = pipe.load(path, clinic)
    assert result.status in ("loaded", "failed", "duplicate_file", "superseded"), result
    if result.status == "failed":
        assert result.reason and result.reason.strip()
    assert result.accounted, result
    state = h.warehouse_state(pipe.settings)
    [batch] = [b for b in state["batches"] if b[0] == result.batch_id]
    assert batch[1] == result.status
    assert state["responses"].get(result.batch_id, 0) == result.rows_loaded
    assert state["quarantined"].get(result.batch_id, 0) == result.rows_quarantined
    kept = [p for p in pipe.settings.received_dir.rglob("*") if p.is_file()]
    assert all(pipe.settings.received_dir in p.resolve().parents for p in kept)
    outcome = result.status if result.status != "loaded" else (
        "loaded with quarantine" if result.rows_quarantined else "loaded")
    OUTCOMES["pipeline", fmt, outcome] += 1
    return outcome


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_mutated_file_ends_loaded_quarantined_or_failed_with_a_reason(
        seeds, fuzz_home, tmp_path, fmt):
    contract, files = seeds[fmt]
    seed = _smallest(files)
    counter = iter(range(10**6))

    # No shrinking: a pipeline case costs seconds; the failing case is printed as found.
    @settings(max_examples=PIPELINE_EXAMPLES, phases=[Phase.explicit, Phase.generate], **FUZZ)
    # Names that are not UTF-8 have their own test below (a known failure would mask others).
    @given(data=fz.mutations_for(fmt, seed, contract.encoding), name=fz.UTF8_FILE_NAMES,
           hint=st.booleans())
    def check(data: bytes, name: str, hint: bool) -> None:
        folder = tmp_path / f"case{next(counter)}"
        folder.mkdir()
        path = folder / name
        try:
            path.write_bytes(data)
        except OSError:  # a name this file system cannot hold (too long): not input
            path = folder / "fallback.bin"
            path.write_bytes(data)
        check_outcome(fuzz_home, path, contract.clinic_id if hint else None, fmt)

    check()


NAMED_CASES = {  # bad-input class -> bytes, applied to each format's smallest seed
    "truncated mid-record": lambda s: s[: len(s) // 2],
    "empty file": lambda s: b"",
    "binary junk": lambda s: bytes(range(256)) * 8,
    "huge field (2 MB)": lambda s: s[:200] + b"A" * 2_000_000 + s[200:],
    "NUL bytes": lambda s: s.replace(b"\n", b"\x00\n", 3),
    "latin-1 bytes in UTF-8": lambda s: s.replace(b"T0", b"T\xe90", 2),
    "0000-00-00 dates": lambda s: re.sub(rb"20\d\d-\d\d-\d\d", b"0000-00-00", s, count=3),
    "dates in year 0000 (0000-05-28)": lambda s: s.replace(b"2025-", b"0000-", 3).replace(
        b"2026-", b"0000-", 3),
    "CSV field with newline and quotes": lambda s: s.replace(b"T01", b'"T0\n1 ""x"""', 2),
    "deeply nested JSON line": lambda s: s + fz._nested(100_000) + b"\n",
    "one huge line (8 MB)": lambda s: s + b"x" * 8_000_000 + b"\n",
}


@pytest.mark.parametrize("bomb", ["stray far cell", "zip bomb", "zip bomb, sizes lying"])
def test_excel_bombs_are_refused_by_the_reader_and_the_ingest(seeds, fuzz_home, tmp_path, bomb):
    """The two workbooks that took the Excel parser (and the whole run) down: refused with a
    reason before parsing, quickly, at the reader and through the whole ingest."""
    contract, files = seeds["excel"]
    data = fz.excel_bombs(_sheet_of(files[0]))[["stray far cell", "zip bomb",
                                                 "zip bomb, sizes lying"].index(bomb)]
    with time_limit(READER_SECONDS), pytest.raises(SourceError) as info:
        reader_for("excel")(data, contract, "march.xlsx")
    assert {"stray far cell": "XFD1048576", "zip bomb": "times smaller when packed",
            "zip bomb, sizes lying": "declared size"}[bomb] in str(info.value), info.value
    path = tmp_path / "march.xlsx"
    path.write_bytes(data)
    assert check_outcome(fuzz_home, path, contract.clinic_id, "excel") == "failed"


def _sheet_of(path: Path) -> str:
    import fastexcel

    return fastexcel.read_excel(path.read_bytes()).sheet_names[0]


@pytest.mark.parametrize("case", list(NAMED_CASES))
def test_named_bad_input_classes_end_with_an_outcome(seeds, fuzz_home, tmp_path, case):
    for fmt in FORMATS:
        contract, files = seeds[fmt]
        path = tmp_path / f"{fmt}-{files[0].name}"
        path.write_bytes(NAMED_CASES[case](_smallest(files)))
        check_outcome(fuzz_home, path, contract.clinic_id, fmt)


def test_a_file_name_that_is_not_utf8_is_recorded_not_crashed(seeds, fuzz_home, tmp_path):
    contract, files = seeds["canonical_csv"]
    path = tmp_path / os.fsdecode(b"clinic-\xff\xfe-export.csv")
    path.write_bytes(files[0].read_bytes())
    assert check_outcome(fuzz_home, path, contract.clinic_id, "canonical_csv") != "failed"


def test_a_clinic_hint_cannot_put_a_file_outside_the_data_directory(seeds, fuzz_home,
                                                                    tmp_path):
    """An unknown clinic id from a caller (CLI --clinic, an API form) is not a path."""
    _, files = seeds["canonical_csv"]
    path = tmp_path / "x.csv"
    path.write_bytes(files[0].read_bytes() + b"\n")
    home = fuzz_home.settings.home_dir
    for hint in ("../../escaped", "/tmp/absolute-escape", "..", "a/../../b"):
        result = fuzz_home.load(path, hint)
        assert result.status == "failed"
        kept = [p for p in fuzz_home.settings.received_dir.rglob("*") if p.is_file()]
        assert all(fuzz_home.settings.received_dir in p.resolve().parents for p in kept)
        outside = [p for p in home.parent.rglob("*") if p.is_file() and home not in p.parents
                   and p.name.startswith(tuple("0123456789abcdef"))]
        assert outside == [], f"{hint!r} put the kept copy outside TANDEM_HOME: {outside}"


def test_fuzz_summary_for_the_docs(capsys):
    """Prints the outcome counts of this run (docs/reliability.md quotes them)."""
    with capsys.disabled():
        for key, n in sorted(OUTCOMES.items()):
            print("FUZZ", *key, n)
    time.sleep(0)
