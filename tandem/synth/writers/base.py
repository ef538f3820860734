"""What every format writer shares: period files, row and file faults, the manifest entries.

A writer gets the chunks of one clinic in order. Each chunk becomes a table of strings
(one record per output row or line, with the file it goes to); row faults are applied to
that table and it is appended to the clinic's period files. File faults are decided when
a file is created (from a generator seeded by the file's name) and finished last.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tandem.core.files import sha256_file
from tandem.synth.clinics import TENTHS, ClinicSpec
from tandem.synth.faults import (
    Fault,
    FaultedTable,
    TableAdapter,
    apply_row_faults,
    pick_file_fault,
    pick_row_kinds,
)
from tandem.synth.options import GenerateOptions
from tandem.synth.population import EPOCH, Chunk

FAILING = frozenset({"truncated_file", "schema_drift"})


def period_start(days: np.ndarray, period: str) -> np.ndarray:
    """The first day of each day's period (Monday for weeks)."""
    if period == "day":
        return days
    if period == "week":
        return days - (days + 3) % 7  # 1970-01-01 was a Thursday
    d64 = days.astype("datetime64[D]")
    return d64.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def period_label(start: int, period: str) -> str:
    d = EPOCH + dt.timedelta(days=int(start))
    if period == "day":
        return d.isoformat()
    if period == "week":
        y, w, _ = d.isocalendar()
        return f"{y}-W{w:02d}"
    return d.strftime("%Y-%m")


def iso_dates(days: np.ndarray) -> pl.Series:
    return pl.Series(days.astype(np.int32)).cast(pl.Date).cast(pl.String)


def score_strings(code: str, values: np.ndarray) -> pl.Series:
    s = pl.Series(values.astype(np.int64))
    if code in TENTHS:
        return pl.select((s // 10).cast(pl.String) + "." + (s % 10).cast(pl.String)).to_series()
    return s.cast(pl.String)


@dataclass
class FileState:
    name: str  # relative to <out>/files
    path: Path
    fault: str | None
    lines: int = 0  # lines written so far, header included
    records: int = 0
    administrations: int = 0
    restore: dict[int, str] = field(default_factory=dict)  # line -> corrected text
    restorable: int = 0
    detail: dict = field(default_factory=dict)


class ClinicWriter:
    """One clinic's files. Subclasses build tables, headers and lines for their format."""

    extension = ".csv"
    has_header = True

    def __init__(self, spec: ClinicSpec, options: GenerateOptions, files_dir: Path,
                 faults_path: Path, rng: np.random.Generator) -> None:
        self.spec = spec
        self.options = options
        self.dir = files_dir / spec.clinic_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rng = rng
        self.files: dict[str, FileState] = {}
        self.order: list[str] = []
        self.window = (spec.started_on, options.as_of)
        self.faults_path = faults_path
        self._faults_fh = faults_path.open("w", encoding="utf-8")
        self._corrected: list[tuple[str, str, set[int]]] = []

    # -- to implement -------------------------------------------------------------
    def adapter(self) -> TableAdapter:
        raise NotImplementedError

    def build_table(self, chunk: Chunk) -> tuple[pl.DataFrame, np.ndarray]:
        """The chunk's records in file order, with a ``_file`` label column; and per
        session its file label (to count administrations)."""
        raise NotImplementedError

    def header(self, state: FileState) -> str:
        raise NotImplementedError

    def render(self, block: pl.DataFrame) -> list[str]:
        """The lines of a block of records (no trailing newline)."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------
    def file_name(self, label: str) -> str:
        return f"{self.spec.clinic_id}_{label}{self.extension}"

    def state(self, label: str) -> FileState:
        st = self.files.get(label)
        if st is None:
            name = self.file_name(label)
            rng = np.random.default_rng(
                [self.options.seed, self.spec.index, zlib.crc32(name.encode())])
            fault = pick_file_fault(rng, self.options.faults, self.spec.format)
            if fault == "bom" and self.spec.encoding != "utf-8":
                fault = None
            st = FileState(name=f"{self.spec.clinic_id}/{name}", path=self.dir / name,
                           fault=fault)
            st.detail["rng"] = rng
            self.files[label] = st
            self.order.append(label)
            self._start_file(st)
        return st

    def _start_file(self, st: FileState) -> None:
        with st.path.open("wb") as fh:
            if st.fault == "bom":
                fh.write("\ufeff".encode())
            if self.has_header:
                fh.write((self.header(st) + "\n").encode(self.spec.encoding))
                st.lines = 1

    def emit(self, fault: Fault) -> None:
        self._faults_fh.write(json.dumps(fault.to_json(), ensure_ascii=False) + "\n")

    def row_ref(self, st: FileState, line: int) -> int | str:
        return line

    def write_chunk(self, chunk: Chunk) -> None:
        table, sess_labels = self.build_table(chunk)
        if table.height == 0:
            return
        uniq, inverse = np.unique(sess_labels, return_inverse=True)
        for rows, _ in chunk.admins.values():
            counts = np.bincount(inverse[rows], minlength=len(uniq))
            for label, c in zip(uniq, counts, strict=True):
                self.state(str(label)).administrations += int(c)
        self.write_table(table)

    def write_table(self, table: pl.DataFrame) -> None:
        files = table["_file"]
        states = {lab: self.state(lab) for lab in files.unique(maintain_order=True).to_list()}
        allowed = tuple(k for k in self.adapter().kinds)
        kinds = pick_row_kinds(self.rng, table.height, self.options.faults, allowed)
        # No row faults in files that fail as a whole; a file to be corrected gets one.
        for label, st in states.items():
            if st.fault not in FAILING and st.fault != "corrected_file":
                continue
            mask = (files == label).to_numpy()
            if st.fault in FAILING:
                kinds[mask] = -1
            elif st.fault == "corrected_file" and st.restorable == 0:
                first = int(np.flatnonzero(mask)[0])
                kinds[first] = allowed.index("out_of_range")
        faulted = apply_row_faults(table, kinds, allowed, self.adapter(), self.rng,
                                   self.window)
        self._write_faulted(faulted, states)

    def _write_faulted(self, faulted: FaultedTable, states: dict[str, FileState]) -> None:
        table = faulted.table
        files = table["_file"]
        firsts = (table.select("_file").with_row_index("i").group_by("_file")
                  .agg(pl.col("i").min()))
        starts = dict(zip(firsts["_file"].to_list(), firsts["i"].to_list(), strict=True))
        base = {lab: states[lab].lines for lab in states}
        for f in faulted.faults:
            lab = files[f.index]
            st = states[lab]
            line = base[lab] + (f.index - starts[lab]) + 1
            self.emit(Fault(st.name, self.row_ref(st, line), f.kind, f.outcome,
                            self.fix_detail(f.detail)))
            if f.index in faulted.originals and st.fault == "corrected_file":
                st.restorable += 1
                orig = pl.DataFrame([faulted.originals[f.index]], schema=table.schema,
                                    orient="row")
                st.restore[line] = self.render(orig.drop("_file"))[0]
        for lab, block in table.partition_by("_file", maintain_order=True,
                                             as_dict=True).items():
            lab = lab[0] if isinstance(lab, tuple) else lab
            st = states[str(lab)]
            lines = self.render(block.drop("_file"))
            with st.path.open("ab") as fh:
                fh.write(("\n".join(lines) + "\n").encode(self.spec.encoding))
            st.lines += len(lines)
            st.records += len(lines)

    def fix_detail(self, detail: dict) -> dict:
        return detail

    # -- file faults, after the last chunk -------------------------------------------
    def finish(self) -> list[dict]:
        """Finish file faults; return the manifest's file records, in name order."""
        records: list[dict] = []
        for label in sorted(self.order):
            st = self.files[label]
            records.append(self._file_record(st.path, st, "delivery"))
            if self.spec.encoding != "utf-8":
                self.emit(Fault(st.name, None, "latin1_encoding", "normalised",
                                {"encoding": self.spec.encoding}))
            if st.fault == "bom":
                self.emit(Fault(st.name, None, "bom", "normalised", {}))
            elif st.fault == "duplicate_file":
                copy = st.path.with_name(f"{st.path.stem}_copy{st.path.suffix}")
                shutil.copyfile(st.path, copy)
                rel = f"{self.spec.clinic_id}/{copy.name}"
                self.emit(Fault(rel, None, "duplicate_file", "file_duplicate",
                                {"duplicate_of": st.name}))
                records.append(self._file_record(copy, st, "duplicate", rel))
            elif st.fault == "corrected_file":
                records.append(self._write_corrected(st))
            elif st.fault == "truncated_file":
                self._truncate(st)
                self.emit(Fault(st.name, None, "truncated_file", "file_failed",
                                {"records_lost": st.records}))
                records[-1] = self._file_record(st.path, st, "delivery")
            elif st.fault == "schema_drift":
                self.emit(Fault(st.name, 1, "schema_drift", "file_failed",
                                {k: v for k, v in st.detail.items() if k != "rng"}))
        self._faults_fh.close()
        self._copy_faults_to_corrected()
        return records

    def _write_corrected(self, st: FileState) -> dict:
        corrected = st.path.with_name(f"{st.path.stem}_corrected{st.path.suffix}")
        rel = f"{self.spec.clinic_id}/{corrected.name}"
        enc = self.spec.encoding
        with st.path.open("rb") as src, corrected.open("wb") as dst:
            for n, raw in enumerate(src, start=1):
                if n in st.restore:
                    dst.write((st.restore[n] + "\n").encode(enc))
                else:
                    dst.write(raw)
        self.emit(Fault(rel, None, "corrected_file", "file_replaced",
                        {"replaces": st.name, "rows_corrected": sorted(st.restore)}))
        self._corrected.append((st.name, rel, set(st.restore)))
        return self._file_record(corrected, st, "corrected", rel)

    def _truncate(self, st: FileState) -> None:
        """Cut the file in the middle of a record, as an interrupted transfer would."""
        data = st.path.read_bytes()
        rng: np.random.Generator = st.detail["rng"]
        cut = int(len(data) * rng.uniform(0.4, 0.8))
        while cut < len(data) - 1 and data[cut - 1:cut] == b"\n":
            cut += 1
        st.path.write_bytes(data[:cut])

    def _file_record(self, path: Path, st: FileState, role: str,
                     rel: str | None = None) -> dict:
        digest, _ = sha256_file(path)
        return {
            "file": rel or st.name,
            "clinic_id": self.spec.clinic_id,
            "format": self.spec.format,
            "role": role,
            "bytes": path.stat().st_size,
            "sha256": digest,
            "records": st.records,
            "administrations": st.administrations,
        }

    def _copy_faults_to_corrected(self) -> None:
        """A corrected re-send keeps its original's row faults except the corrected rows."""
        if not self._corrected:
            return
        by_name = {orig: (rel, fixed) for orig, rel, fixed in self._corrected}
        tmp = self.faults_path.with_suffix(".tmp")
        with self.faults_path.open(encoding="utf-8") as src, tmp.open("w",
                                                                     encoding="utf-8") as dst:
            for line in src:
                dst.write(line)
                f = json.loads(line)
                hit = by_name.get(f["file"])
                if hit and f["row"] is not None and f["kind"] != "schema_drift" and (
                        f["row"] not in hit[1]):
                    f["file"] = hit[0]
                    dst.write(json.dumps(f, ensure_ascii=False) + "\n")
        tmp.replace(self.faults_path)

