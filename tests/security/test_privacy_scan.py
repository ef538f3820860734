"""No raw client identifier anywhere Tandem writes, and the pseudonym key never logged.

A demo-like run in real processes: generate clinic files in all four formats (with
truncated and corrected files, so failure reasons and superseded batches occur), then
``tandem ingest`` and ``tandem aggregate`` recording their runs (parameters, logs,
events) in a Prefect server whose database lives under ``TANDEM_HOME/prefect`` (the
command line runs without Prefect unless a server is configured, so one is started
here). Then every place is scanned: the lake (the bytes of its catalog and data files,
every value of every table, since Parquet compresses and encrypts strings, and every value
the catalog keeps in plain text, its column statistics among them), validation reports,
Prefect's database (flow run parameters, logs, events), and everything the commands printed.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tandem.core import published, warehouse
from tandem.core.settings import Settings
from tests.conftest import REPO_ROOT
from tests.flows.servers import prefect_server
from tests.reliability import helpers as h

KEY = "privacy-scan-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
# Raw areas: the clinics' files as sent (by design, for re-runs and audit) and the secrets.
RAW_AREAS = ("received", "inbox", "intake", "secrets", "demo-input")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("privacy")
    corpus = h.generate_corpus(base / "input", seed=11, truncated_file=0.3, corrected_file=0.2,
                               duplicate_file=0.1)
    home = Settings(home=base / "home")
    home.ensure_dirs()
    h.install_contracts(home, corpus)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TANDEM_", "PREFECT_"))}
    env.update(TANDEM_HOME=str(home.home_dir), TANDEM_PSEUDONYM_KEY=KEY,
               PREFECT_HOME=str(home.prefect_home), PREFECT_LOGGING_LEVEL="DEBUG",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", GX_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300", PYTHONPATH=str(REPO_ROOT))
    outputs = []
    with prefect_server(home.prefect_home) as api_url:
        env["PREFECT_API_URL"] = api_url
        for args in (["-v", "ingest", str(corpus / "files"), "--as-of", h.AS_OF.isoformat()],
                     ["-v", "aggregate", "--as-of", h.AS_OF.isoformat()]):
            proc = subprocess.run([sys.executable, "-m", "tandem.app.cli", *args],
                                  cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode in (0, 3), proc.stderr[-3000:]  # 3: some files failed
            outputs.append(proc.stdout + proc.stderr)
    truth = pl.read_parquet(corpus / "truth_episodes.parquet")
    ids = set(truth["client_id"].unique().to_list())
    text_ids = set()
    for f in (corpus / "files").rglob("*"):
        if f.suffix in (".csv", ".ndjson"):
            text_ids |= set(re.findall(r"\b[A-Z]{2}-\d{6}\b", f.read_text(errors="replace")))
    # REDCap record ids are bare numbers (they would match any count); the others are
    # clinic-style ids like NS-004211 and can be searched for anywhere.
    needles = {i for i in ids | text_ids if not i.isdigit()}
    assert len(needles) >= 10
    return {"home": home, "needles": needles, "outputs": outputs, "corpus": corpus}


def _written_files(home: Settings) -> list[Path]:
    out = []
    for p in home.home_dir.rglob("*"):
        rel = p.relative_to(home.home_dir).parts
        if p.is_file() and rel[0] not in RAW_AREAS:
            out.append(p)
    return out


def _lake_values(home: Settings, schemas: tuple[str, ...]) -> str:
    """Every value of every table of these lake schemas, as text (Parquet compresses and,
    here, encrypts strings on disk)."""
    with warehouse.reader(home) as con:
        parts = []
        for schema, name in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = 'lake'").fetchall():
            if schema in schemas:
                parts.append(repr(con.execute(
                    f'SELECT * FROM lake."{schema}"."{name}"').fetchall()))  # noqa: S608 - table names come from the snapshot or the test itself
        return "\n".join(parts)


def _catalog_values(home: Settings) -> str:
    """Every value the SQLite catalog holds in plain text (column statistics included)."""
    con = sqlite3.connect(home.lake_dir / "catalog.sqlite")
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(con.execute(f'SELECT * FROM "{n}"').fetchall())  # noqa: S608 - table names come from the snapshot or the test itself
                         for n in names)
    finally:
        con.close()


def test_the_demo_run_loaded_failed_and_published(demo):
    home = demo["home"]
    state = h.warehouse_state(home)
    statuses = {b[1] for b in state["batches"]}
    assert "loaded" in statuses and "failed" in statuses  # truncated files fail
    assert published.current(home) is not None
    assert any(home.prefect_home.rglob("*.db")), "Prefect kept no database under PREFECT_HOME"


def test_no_raw_client_id_in_any_file_tandem_or_prefect_wrote(demo):
    needles = {n.encode() for n in demo["needles"]}
    files = _written_files(demo["home"])
    assert any(f.suffix == ".db" for f in files)
    hits = h.scan_bytes(files, needles)
    assert hits == {}, f"raw client ids found: {hits}"


@pytest.mark.parametrize("which", ["warehouse", "published", "catalog"])
def test_no_raw_client_id_in_any_table_value(demo, which):
    home = demo["home"]
    text = (_lake_values(home, ("main", "locks")) if which == "warehouse"
            else _lake_values(home, ("marts",)) if which == "published"
            else _catalog_values(home))
    assert len(text) > 1000
    found = sorted(n for n in demo["needles"] if n in text)
    assert found == [], f"the {which} holds raw client ids: {found[:5]}"


def test_no_raw_client_id_in_what_the_commands_printed_or_logged(demo):
    text = "\n".join(demo["outputs"])
    found = sorted(n for n in demo["needles"] if n in text)
    assert found == [], f"printed or logged: {found[:5]}"


def test_the_pseudonym_key_is_never_written_or_logged(demo):
    files = _written_files(demo["home"])
    assert h.scan_bytes(files, {KEY.encode()}) == {}
    assert KEY not in "\n".join(demo["outputs"])
    home = demo["home"]
    assert KEY not in _lake_values(home, ("main", "locks", "marts"))
    assert KEY not in _catalog_values(home)
