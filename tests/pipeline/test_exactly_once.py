"""Re-running anything is safe: the whole data set twice, in shuffled order, equals once."""

from __future__ import annotations

import random

from tandem.core import warehouse
from tests.synth_support import as_of, generate_small, install_contracts, pick_files

# Content, with lineage by file content (not batch ids or names, which depend on order:
# of two identical copies, whichever comes first is the one loaded).
CONTENT = {
    "response": """
        SELECT r.* EXCLUDE (batch_id), b.content_sha256 FROM response r JOIN batch b
        USING (batch_id) ORDER BY ALL""",
    "reported_total": """
        SELECT t.* EXCLUDE (batch_id), b.content_sha256 FROM reported_total t JOIN batch b
        USING (batch_id) ORDER BY ALL""",
    "quarantine": """
        SELECT q.* EXCLUDE (batch_id, quarantined_at), b.content_sha256 FROM quarantine q
        JOIN batch b USING (batch_id) WHERE b.status = 'loaded' ORDER BY ALL""",
    "files": """
        SELECT content_sha256, bool_or(status = 'loaded') AS loaded,
               bool_or(status = 'failed') AS failed
        FROM batch GROUP BY ALL ORDER BY ALL""",
}


def _ingest(settings, files, day) -> list:
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.pipeline.ingest import IngestRun, process_file

    contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
    return [process_file(p, IngestRun(
        settings=settings, contracts=contracts, instruments=instruments,
        key=b"test-only-key", clinic_hint=p.parent.name, as_of=day))
            for p in files]


def _content(settings) -> dict:
    con = warehouse.connect(settings, read_only=True)
    try:
        return {k: con.execute(sql).fetchall() for k, sql in CONTENT.items()}
    finally:
        con.close()


def test_twice_shuffled_equals_once(tmp_path, monkeypatch):
    from tandem.core.settings import Settings

    gen = tmp_path / "gen"
    manifest = generate_small(gen, seed=13)
    files = pick_files(gen, manifest, per_clinic=1)
    # Keep the files whose order matters: a corrected re-send and its original, copies.
    assert any("_corrected" in p.name for p in files) and any("_copy" in p.name for p in files)

    homes = {}
    for label, order in (("once", [sorted(files)]),
                         ("twice", [random.Random(1).sample(files, len(files)),
                                    random.Random(2).sample(files, len(files))])):
        monkeypatch.setenv("TANDEM_HOME", str(tmp_path / label))
        settings = Settings()
        settings.ensure_dirs()
        install_contracts(gen, settings)
        for run in order:
            results = _ingest(settings, run, as_of(manifest))
            assert all(r.accounted for r in results)
        homes[label] = settings

    once, twice = _content(homes["once"]), _content(homes["twice"])
    assert once["response"], "something should load"
    for table in CONTENT:
        assert once[table] == twice[table], table


def test_one_chunk_equals_file_by_file(tmp_path, monkeypatch):
    """Files validated and checked against loaded answers as one chunk end exactly as they
    do loaded one call at a time: same outcome per file, same warehouse."""
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.core.settings import Settings
    from tandem.pipeline.ingest import IngestRun, process_files

    gen = tmp_path / "gen"
    manifest = generate_small(gen, seed=13)
    files = pick_files(gen, manifest, per_clinic=1)
    # every file twice, shuffled: copies, corrected re-sends and conflicts meet in a chunk
    order = random.Random(3).sample(files, len(files)) + random.Random(4).sample(files,
                                                                                 len(files))
    outcomes, homes = {}, {}
    for label in ("file_by_file", "one_chunk"):
        monkeypatch.setenv("TANDEM_HOME", str(tmp_path / label))
        settings = Settings()
        settings.ensure_dirs()
        install_contracts(gen, settings)
        if label == "file_by_file":
            results = _ingest(settings, order, as_of(manifest))
        else:
            contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
            results = []
            for clinic in sorted({p.parent.name for p in order}):
                mine = [p for p in order if p.parent.name == clinic]
                results += process_files(mine, IngestRun(
                    settings=settings, contracts=contracts, instruments=instruments,
                    key=b"test-only-key", clinic_hint=clinic, as_of=as_of(manifest)))
            by_name = {}
            for r in results:  # back in the file-by-file order (per clinic, in turn)
                by_name.setdefault((r.clinic_id, r.source_name), []).append(r)
            results = [by_name[(p.parent.name, p.name)].pop(0) for p in order]
        outcomes[label] = [(r.source_name, r.status, r.rows_received, r.rows_loaded,
                            r.rows_quarantined, r.rows_duplicate, r.rows_replaced)
                           for r in results]
        homes[label] = settings
    assert any(o[1] == "duplicate_file" for o in outcomes["one_chunk"])
    assert outcomes["one_chunk"] == outcomes["file_by_file"]
    a, b = _content(homes["file_by_file"]), _content(homes["one_chunk"])
    for table in CONTENT:
        assert a[table] == b[table], table


def _ors(clients: range, changed: dict | None = None, session: int = 1) -> str:
    from tests.conftest import HEADER, canonical_rows

    lines = [HEADER]
    for c in clients:
        scores = [float((c + i) % 9 + 1) for i in range(4)]
        for i, s in (changed or {}).get(c, {}).items():
            scores[i - 1] = s
        lines.append(canonical_rows(f"C{c:03d}", "T01", f"2026-01-{c:02d}", session, "ORS",
                                    scores))
    return "".join(lines)


def test_answers_shared_between_files_of_one_chunk(tmp_path, monkeypatch):
    """Rows that another file of the same chunk loaded, or replaced, are told apart as
    they would be file by file: identical ones are duplicates, different ones conflicts."""
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.core.settings import Settings
    from tandem.pipeline.ingest import IngestRun, process_files
    from tests.conftest import CLINIC_CONTRACT

    src = tmp_path / "src"
    src.mkdir()
    files = {
        "a.csv": _ors(range(1, 5)),
        "b.csv": _ors(range(3, 7)),  # clients 3-4 as in a: duplicates
        "c.csv": _ors(range(5, 8), changed={5: {2: 0.5}}),  # client 5 item 2 differs from b
        "a_corrected.csv": _ors(range(1, 5), changed={1: {1: 9.5}}),  # replaces a
        "d.csv": _ors(range(1, 2)),  # a's original answers: conflict with the correction
        "e.csv": _ors(range(1, 3), session=2),  # new session: loads
    }
    for name, text in files.items():
        (src / name).write_text(text)
    order = [src / n for n in files]
    outcomes, content = {}, {}
    for label in ("file_by_file", "one_chunk"):
        monkeypatch.setenv("TANDEM_HOME", str(tmp_path / label))
        settings = Settings()
        settings.ensure_dirs()
        (settings.local_contracts_dir / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
        kw = {"settings": settings, "contracts": load_clinic_contracts(settings),
              "instruments": load_instruments(settings), "key": b"test-only-key",
              "clinic_hint": "northside", "as_of": as_of({"as_of": "2026-06-30"})}
        if label == "file_by_file":
            results = [r for p in order for r in process_files([p], IngestRun(**kw))]
        else:
            results = process_files(order, IngestRun(**kw))
        outcomes[label] = [(r.source_name, r.status, r.rows_loaded, r.rows_quarantined,
                            r.rows_duplicate, r.rows_replaced) for r in results]
        content[label] = _content(settings)
    expected = [
        ("a.csv", "loaded", 16, 0, 0, 0),
        ("b.csv", "loaded", 8, 0, 8, 0),
        # client 5 item 2 conflicts (each canonical row is its own record); the rest of
        # clients 5-6 are duplicates of b
        ("c.csv", "loaded", 4, 1, 7, 0),
        ("a_corrected.csv", "loaded", 16, 0, 0, 16),
        ("d.csv", "loaded", 0, 1, 3, 0),  # item 1 conflicts with the correction
        ("e.csv", "loaded", 8, 0, 0, 0),
    ]
    assert outcomes["file_by_file"] == expected
    assert outcomes["one_chunk"] == expected
    assert content["one_chunk"] == content["file_by_file"]
