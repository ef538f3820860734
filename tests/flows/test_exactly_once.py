"""Re-running anything is safe: the whole data set twice, in shuffled order, equals once."""

from __future__ import annotations

import random

import duckdb

from tests.flows.synth_support import as_of, generate_small, install_contracts, pick_files

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
    from flows.ingest import process_file
    from tandem.contracts import load_clinic_contracts, load_instruments

    contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
    return [process_file(p, settings=settings, contracts=contracts, instruments=instruments,
                         key=b"test-only-key", clinic_hint=p.parent.name, as_of=day)
            for p in files]


def _content(settings) -> dict:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return {k: con.execute(sql).fetchall() for k, sql in CONTENT.items()}
    finally:
        con.close()


def test_twice_shuffled_equals_once(tmp_path, monkeypatch):
    from tandem.settings import Settings

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
