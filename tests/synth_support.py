"""Helpers for ingest tests on generated data: a data set, its contracts, and the manifest."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

from tandem.core import warehouse
from tandem.core.settings import Settings


def generate_small(out: Path, seed: int = 11, row_scale: float = 20.0) -> dict:
    """A small data set (one clinic per format) with many faults; returns the manifest.

    Row faults are 20x their default rate so a few files hold every kind; file faults
    are raised less, so most files still load.
    """
    from dataclasses import replace

    from tandem.synth import FaultRates, GenerateOptions, generate

    rates = FaultRates().scaled(row_scale)
    rates = replace(rates, bom=0.1, duplicate_file=0.1, corrected_file=0.1,
                    truncated_file=0.06, schema_drift=0.08)
    generate(GenerateOptions(out=out, seed=seed, clinics=4, clients_per_clinic=8,
                             faults=rates))
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def install_contracts(gen: Path, settings: Settings) -> None:
    target = settings.local_contracts_dir / "clinics"
    target.mkdir(parents=True, exist_ok=True)
    for path in (gen / "data_contracts" / "clinics").glob("*.yaml"):
        shutil.copy(path, target / path.name)


def pick_files(gen: Path, manifest: dict, per_clinic: int) -> list[Path]:
    """Every file with a file-level fault (and its original), plus the first few others."""
    special = {f["file"] for f in manifest["faults"]
               if f["row"] is None and f["kind"] not in ("latin1_encoding",)}
    special |= {f["detail"][k] for f in manifest["faults"] for k in ("replaces", "duplicate_of")
                if k in f["detail"]}
    chosen: list[str] = []
    for clinic in sorted({f["clinic_id"] for f in manifest["files"]}):
        names = sorted(f["file"] for f in manifest["files"] if f["clinic_id"] == clinic)
        mine = [n for n in names if n in special]
        rest = [n for n in names if n not in special]
        chosen += mine + rest[: max(0, per_clinic - len(mine))]
    return [gen / "files" / name for name in sorted(chosen)]


def as_of(manifest: dict) -> dt.date:
    return dt.date.fromisoformat(manifest["as_of"])


def quarantined_refs(settings: Settings) -> set[tuple[str, str]]:
    """(clinic/file, row reference) of every quarantined record."""
    con = warehouse.connect(settings, read_only=True)
    try:
        rows = con.execute(
            "SELECT DISTINCT b.clinic_id || '/' || b.source_name, q.source_ref "
            "FROM quarantine q JOIN batch b USING (batch_id)"
        ).fetchall()
    finally:
        con.close()
    return {(a, b) for a, b in rows}


def expected_refs(manifest: dict, files: list[Path]) -> set[tuple[str, str]]:
    names = {f"{p.parent.name}/{p.name}" for p in files}
    return {(f["file"], str(f["row"])) for f in manifest["faults"]
            if f["expected_outcome"] == "quarantine" and f["file"] in names}
