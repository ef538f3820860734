"""The incremental ``aggregate``: after several increments (with corrected re-sends and
duplicate files) it publishes exactly what a full rebuild and the one-shot ``build_marts``
publish, while recomputing only the clients the new batches touched."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from tandem.core import published, warehouse
from tandem.core.contracts import load_clinic_contracts, load_instruments
from tandem.core.pseudonym import load_key
from tandem.core.settings import Settings
from tandem.pipeline.aggregate import mart_params, run_aggregate
from tandem.pipeline.ingest import IngestRun, process_file
from tandem.synth import GenerateOptions, generate
from tandem.synth.options import FaultRates
from tests.conftest import HEADER, canonical_rows
from tests.transforms.test_client_state import assert_marts_equal
from transforms.marts import build_marts


def snapshot_tables(settings: Settings) -> dict[str, pl.DataFrame]:
    snap = published.current(settings)
    assert snap is not None
    con = published.open_snapshot(snap)
    try:
        return {t: pl.from_arrow(con.sql(f'SELECT * FROM "{t}"').to_arrow_table())  # noqa: S608 - table names come from the snapshot or the test itself
                for t in sorted(snap.tables)}
    finally:
        con.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    generate(GenerateOptions(out=out, seed=2, clinics=2, clients_per_clinic=30,
                             faults=FaultRates(corrected_file=0.15, duplicate_file=0.15)))
    return out, json.loads((out / "manifest.json").read_text())


def test_incremental_equals_full_rebuild_and_one_shot(tandem_home, generated):
    out, manifest = generated
    settings = tandem_home
    for c in (out / "data_contracts" / "clinics").glob("*.yaml"):
        shutil.copyfile(c, settings.local_contracts_dir / "clinics" / c.name)
    contracts, instruments = load_clinic_contracts(settings), load_instruments(settings)
    key, as_of = load_key(settings), dt.date.fromisoformat(manifest["as_of"])
    files = manifest["files"]
    roles = [f["role"] for f in files]
    assert "corrected" in roles and "duplicate" in roles
    # Cut before every corrected re-send: its original was aggregated in an earlier run.
    cuts = sorted({0, *[i for i, r in enumerate(roles) if r == "corrected"], len(files)})
    runs = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        for f in files[lo:hi]:
            process_file(out / "files" / f["file"], IngestRun(
                settings=settings, contracts=contracts, instruments=instruments,
                key=key, clinic_hint=f["clinic_id"], as_of=as_of))
        runs.append(run_aggregate(settings, as_of))
    assert runs[0]["mode"] == "full" and {r["mode"] for r in runs[1:]} == {"incremental"}
    # Each increment patched the previous snapshot (only touched clients' row-level rows).
    assert not runs[0]["patched"] and all(r["patched"] for r in runs[1:])
    total_clients = runs[-1]["clients_recomputed"]
    assert any(r["clients_recomputed"] > 0 for r in runs[1:])

    con = warehouse.connect(settings, read_only=True)
    statuses = dict(con.execute("SELECT status, count(*) FROM batch GROUP BY 1").fetchall())
    responses = pl.from_arrow(con.sql("SELECT * FROM response").to_arrow_table())
    n_clients = con.execute("SELECT count(DISTINCT (clinic_id, client_key)) FROM response"
                            ).fetchall()[0][0]
    con.close()
    assert statuses.get("superseded", 0) >= 2 and statuses.get("duplicate_file", 0) >= 1
    assert total_clients < n_clients  # the last run recomputed only some clients

    quiet = run_aggregate(settings, as_of)  # nothing new: nothing recomputed
    assert quiet["mode"] == "incremental" and quiet["clients_recomputed"] == 0
    assert quiet["patched"]
    incremental = snapshot_tables(settings)
    # Another as_of changes ``open`` for everyone: written whole, still equal to a rebuild.
    later = as_of + dt.timedelta(days=45)
    moved = run_aggregate(settings, later)
    assert not moved["patched"]
    moved_tables = snapshot_tables(settings)
    run_aggregate(settings, later, full=True)
    assert_marts_equal(moved_tables, snapshot_tables(settings))
    run_aggregate(settings, as_of)  # back to as_of for the comparisons below

    full = run_aggregate(settings, as_of, full=True)
    assert full["mode"] == "full" and full["clients_recomputed"] == n_clients
    rebuilt = snapshot_tables(settings)
    assert incremental.keys() == rebuilt.keys()
    assert_marts_equal(incremental, rebuilt)

    one_shot = build_marts(responses, instruments, mart_params(settings, as_of))
    assert_marts_equal({k: incremental[k] for k in one_shot}, one_shot)


def test_aggregate_flow_recomputes_only_touched_clients(prefect_server, tandem_home,
                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_MIN_CELL_SIZE", "1")
    from flows.aggregate import aggregate
    from flows.ingest import ingest

    first = tmp_path / "northside-2026-01.csv"
    first.write_text(HEADER + canonical_rows("A", "T01", "2026-01-05", 1, "ORS", [4, 5, 5, 6])
                     + canonical_rows("B", "T02", "2026-01-06", 1, "ORS", [3, 3, 3, 3]))
    ingest([str(first)])
    assert aggregate(as_of="2026-02-01")["mode"] == "full"  # no state yet

    second = tmp_path / "northside-2026-02.csv"
    second.write_text(HEADER + canonical_rows("A", "T01", "2026-01-19", 2, "ORS",
                                              [6, 7, 7, 8]))
    ingest([str(second)])
    info = aggregate(as_of="2026-02-01")
    assert info["mode"] == "incremental" and info["clients_recomputed"] == 1
    incremental = snapshot_tables(tandem_home)
    ors = incremental["episode_measure"].filter(pl.col("instrument") == "ORS").sort(
        "therapist_id")
    assert ors["change"].to_list() == [8.0, None]  # B: one score, no pair: no change

    assert aggregate(as_of="2026-02-01", full=True)["mode"] == "full"
    rebuilt = snapshot_tables(tandem_home)
    assert_marts_equal(incremental, rebuilt)
    with warehouse.writer(tandem_home) as con:
        meta = dict(con.execute("SELECT key, value FROM agg_state").fetchall())
    assert meta["mode"] == "full" and int(meta["snapshot"]) >= 2


def test_judged_marts_are_patched_only_when_judging_needs_no_other_client():
    """An episode's category depends on other clients when its instrument's change rule uses
    the reference sample: then episode_measure and episode_outcome are written whole."""
    from tandem.core.contracts import ChangeRule
    from tandem.pipeline.aggregate import CLIENT_MARTS, client_marts

    instruments = load_instruments()
    assert client_marts(instruments) == CLIENT_MARTS   # published thresholds: client-local
    hla = dict(instruments)
    hla["PHQ9"] = hla["PHQ9"].model_copy(update={"change": ChangeRule(
        method="HA", reliability=0.84, cutoff=hla["PHQ9"].change.cutoff)})
    assert client_marts(hla) == CLIENT_MARTS - {"episode_measure", "episode_outcome"}
