"""No raw client id is stored anywhere: not in the warehouse file, quarantine or reports."""

from __future__ import annotations

import json

from tandem.core import warehouse
from tests.synth_support import as_of, generate_small, install_contracts, pick_files


def _client_ids(gen) -> set[str]:
    import polars as pl

    truth = pl.read_parquet(gen / "truth_episodes.parquet")
    return set(truth["client_id"].unique().to_list())


def test_no_raw_client_id_in_the_warehouse_bytes(tandem_home, tmp_path):
    from tandem.core.contracts import load_clinic_contracts, load_instruments
    from tandem.pipeline.ingest import IngestRun, process_file

    gen = tmp_path / "gen"
    manifest = generate_small(gen, seed=16)
    install_contracts(gen, tandem_home)
    files = pick_files(gen, manifest, per_clinic=1)
    contracts, instruments = load_clinic_contracts(tandem_home), load_instruments(tandem_home)
    results = [process_file(p, IngestRun(
        settings=tandem_home, contracts=contracts, instruments=instruments,
        key=b"test-only-key", clinic_hint=p.parent.name, as_of=as_of(manifest))) for p in files]
    assert sum(r.rows_loaded for r in results) > 0
    assert sum(r.rows_quarantined for r in results) > 0

    with warehouse.reader(tandem_home) as con:
        raw_values = [r for (r,) in con.execute("SELECT raw_values FROM quarantine").fetchall()]

    # Ids long enough not to occur by chance in binary data (REDCap record ids are 4-digit
    # numbers, so they are checked as the JSON values quarantine would hold).
    ids = _client_ids(gen)
    long_ids = {i for i in ids if len(i) >= 6}
    assert long_ids
    # every byte the lake holds: its catalog and its data files
    blob = b"".join(p.read_bytes() for p in sorted(tandem_home.lake_dir.rglob("*"))
                    if p.is_file())
    for cid in long_ids:
        for enc in ("utf-8", "utf-16-le"):
            assert cid.encode(enc) not in blob, cid
    for text in raw_values:
        values = json.loads(text)
        assert "client_id" not in values
        assert values.get("client_key") not in ids
    for path in tandem_home.validation_dir.iterdir():
        body = path.read_text(encoding="utf-8")
        for cid in long_ids:
            assert cid not in body, (cid, path.name)
        assert not any(f'"{cid}"' in body for cid in ids)
