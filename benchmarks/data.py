"""Benchmark data of a named size, made with ``tandem.synth`` and cached.

Two data sets per size, under ``benchmarks/.data/<size>/`` (gitignored), reused while
the options that made them are unchanged (``options.json`` beside them):

- ``canonical/``: one clinic only. ``make_clinics`` gives clinic 0 the canonical CSV
  format, so ``--clinics 1`` is a canonical-only run through the generator's public
  options. It is generated ``--clean`` (no faults: every row is valid and every file has
  the same header and no BOM) and its monthly files are concatenated, header once, into
  ``canonical.csv``: the single canonical file of the ingest scenario.
- ``backfill/``: four clinics, one per format (canonical CSV, REDCap CSV, FHIR NDJSON,
  Excel), ``--period day``: about 700 days x 3 daily-file clinics, about 2,300 files (the
  Excel practice always exports a workbook per quarter). Also ``--clean``. The files are
  hard-linked into ``inbox/<clinic>/`` (``tandem ingest`` takes a REDCap, FHIR or Excel
  file's clinic from that folder), so one ``tandem ingest backfill/inbox`` loads them all.

Administrations per client are about 28 (measured: 98,506 from 3,500 clients), so the
client counts below give about 1 M (``reference``) and 10 M (``large``) administrations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

DATA_ROOT = Path(__file__).resolve().parent / ".data"
AS_OF = "2026-06-30"  # the generator's default "today": every true date falls before it
SEED = 42


@dataclass(frozen=True)
class Size:
    """What a named size means."""

    name: str
    canonical_clients: int  # one canonical clinic
    backfill_clients: int | None  # per clinic, four clinics; None: no back-fill data
    backfill_period: str = "day"
    # How the ingest scenario reads the canonical data: one file, or the monthly files
    # as the clinic delivers them (at 10 M one 3 GB file is not a realistic delivery).
    ingest_input: str = "single"


SIZES: dict[str, Size] = {
    # seconds: CI runs it so the harness never rots (about 10 k administrations)
    "small": Size("small", canonical_clients=360, backfill_clients=30,
                  backfill_period="month"),
    # 1 M administrations
    "reference": Size("reference", canonical_clients=35_600, backfill_clients=11_800),
    # 10 M administrations
    "large": Size("large", canonical_clients=356_000, backfill_clients=None,
                  ingest_input="monthly"),
}

_CHILD = """
import json, sys
from pathlib import Path
from tandem.synth import FaultRates, GenerateOptions, generate
o = json.loads(sys.argv[1])
r = generate(GenerateOptions(out=Path(o["out"]), seed=o["seed"], clinics=o["clinics"],
             clients_per_clinic=o["clients_per_clinic"], period=o["period"],
             faults=FaultRates.clean(), workers=o["workers"]))
print(json.dumps({"administrations": r.administrations, "files": r.files}))
"""


@dataclass
class DataSet:
    """A generated data set ready to ingest."""

    root: Path  # the generator's output folder
    files: list[Path]  # the files to ingest, in name order
    contracts: Path  # folder of clinic contracts (*.yaml)
    administrations: int
    single_csv: Path | None = None  # canonical only: every file in one

    def describe(self) -> dict:
        return {"root": str(self.root), "files": len(self.files),
                "administrations": self.administrations,
                "bytes": sum(p.stat().st_size for p in self.files)}


def generator_fingerprint() -> str:
    """A hash of the generator's source: a changed generator invalidates the cache."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted((Path(__file__).resolve().parent.parent / "tandem" / "synth").rglob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _key(options: dict) -> dict:
    """The cache key: the options less ``workers`` (which do not change the bytes)."""
    return {k: v for k, v in options.items() if k != "workers"}


def _generate(out: Path, options: dict) -> dict:
    """Generate into ``out`` unless the cached copy was made with the same options (and
    the same generator source)."""
    options = {**options, "generator": generator_fingerprint()}
    marker = out / "options.json"
    if marker.exists() and (out / "manifest.json").exists():
        cached = json.loads(marker.read_text())
        if _key(cached.get("options", {})) == _key(options):
            return cached["result"]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps({**options, "out": str(out / "set")})],
        capture_output=True, text=True, env=env, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"generation failed: {proc.stderr[-2000:]}")
    # the generator owns "set/"; move its output up so the layout is flat
    for p in (out / "set").iterdir():
        p.rename(out / p.name)
    (out / "set").rmdir()
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    marker.write_text(json.dumps({"options": options, "result": result}, indent=1))
    return result


def _files(root: Path, folder: str = "files") -> list[Path]:
    return sorted(p for p in (root / folder).rglob("*") if p.is_file()
                  and not p.name.startswith("."))


def _concatenate(parts: list[Path], dest: Path) -> None:
    """One CSV from same-header CSVs, header once (raises if a header differs)."""
    tmp = dest.with_suffix(".tmp")
    header: bytes | None = None
    with tmp.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                first = fh.readline()
                if header is None:
                    header = first
                    out.write(first)
                elif first != header:
                    raise RuntimeError(f"{part} has another header: {first!r}")
                shutil.copyfileobj(fh, out, 16 << 20)
    tmp.replace(dest)


def canonical(size: str, workers: int | None = None) -> DataSet:
    """The canonical-only data set of ``size`` (and its single concatenated CSV)."""
    spec = SIZES[size]
    out = DATA_ROOT / size / "canonical"
    options = {"seed": SEED, "clinics": 1, "clients_per_clinic": spec.canonical_clients,
               "period": "month", "workers": 1}
    result = _generate(out, options)
    files = _files(out)
    single: Path | None = None
    if spec.ingest_input == "single":
        single = out / "canonical.csv"
        if not single.exists():
            _concatenate(files, single)
    return DataSet(out, files, out / "data_contracts" / "clinics",
                   result["administrations"], single)


def backfill(size: str, workers: int | None = None) -> DataSet:
    """The four-format daily-file data set of ``size``."""
    spec = SIZES[size]
    if spec.backfill_clients is None:
        raise ValueError(f"no back-fill data at size {size!r}")
    out = DATA_ROOT / size / "backfill"
    options = {"seed": SEED, "clinics": 4, "clients_per_clinic": spec.backfill_clients,
               "period": spec.backfill_period, "workers": workers or os.cpu_count() or 1}
    result = _generate(out, options)
    inbox = _inbox(out)
    return DataSet(out, _files(inbox.parent, inbox.name), out / "data_contracts" / "clinics",
                   result["administrations"])


def _inbox(out: Path) -> Path:
    """``inbox/<clinic>/<file>``: hard links to the generated files, laid out the way
    ``tandem ingest`` tells a REDCap, FHIR or Excel file's clinic from its folder."""
    inbox = out / "inbox"
    if (out / "inbox.done").exists():
        return inbox
    shutil.rmtree(inbox, ignore_errors=True)
    for f in _files(out):
        dest = inbox / f.relative_to(out / "files")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, dest)
        except OSError:  # another file system
            shutil.copyfile(f, dest)
    (out / "inbox.done").write_text("")
    return inbox


def describe_sizes() -> list[dict]:
    return [asdict(s) for s in SIZES.values()]
