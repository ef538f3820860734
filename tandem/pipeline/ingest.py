"""The ingest: files in, validated rows in the warehouse, the rest quarantined.

For each file: keep a copy, read it with its clinic's contract, pseudonymise client ids,
stage, validate with Great Expectations, set aside duplicates, then load the batch in
one DuckDB transaction (rows, quarantine, validation results and the batch record
together, or nothing). Every received file ends with a batch record and an outcome.

Free of Prefect: ``flows.ingest`` wraps :func:`ingest_paths` in a task and a flow; the
command line, tests and benchmarks call it directly.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import duckdb
import polars as pl

from tandem.core import warehouse
from tandem.core.contracts import (
    ClinicContract,
    Instrument,
    load_clinic_contracts,
    load_instruments,
)
from tandem.core.faults import fault_point
from tandem.core.files import Received, keep_copy, receive, version_key
from tandem.core.pseudonym import check_key, load_key, pseudonym_map
from tandem.core.safe_files import FileRefused
from tandem.core.settings import Settings
from tandem.pipeline.loaded_answers import LoadedAnswers
from tandem.pipeline.sources import SourceError, cut_text
from tandem.pipeline.sources.isolated import ReadFailed, read_isolated
from tandem.pipeline.value_caps import cap_values
from tandem.quality.contract import check_many
from tandem.quality.gx_runner import warm_up_validator
from tandem.quality.outcomes import ValidationOutcome
from tandem.quality.reports import write_batch_report
from transforms.staging import (
    ROW_ID,
    UNIT_KEY,
    add_contract_columns,
    split_exact_duplicates,
    stage_rows,
    to_reported_total_rows,
    to_response_rows,
)

TRIGGERS = ("cli", "inbox", "api", "sweep")
# The stored path of a batch whose file was refused unread (a link, a pipe): no copy.
NOT_KEPT = "_not_kept"


@dataclass(frozen=True)
class IngestRun:
    """What one ingest run works with: where, under which contracts and key, and why.

    Loaded once per run (:meth:`load`) and handed to every file of it."""

    settings: Settings
    contracts: dict[str, ClinicContract]
    instruments: dict[str, Instrument]
    key: bytes = field(repr=False)
    clinic_hint: str | None = None
    trigger: str = "cli"
    flow_run_id: str | None = None
    # Sessions after this date count as future (a contract rule); default today.
    as_of: dt.date = field(default_factory=dt.date.today)

    @classmethod
    def load(cls, settings: Settings, *, clinic_hint: str | None = None, trigger: str = "cli",
             flow_run_id: str | None = None, as_of: dt.date | None = None) -> IngestRun:
        """Contracts, instruments and the pseudonym key read from ``settings``."""
        return cls(settings, load_clinic_contracts(settings), load_instruments(settings),
                   load_key(settings), clinic_hint, trigger, flow_run_id,
                   as_of or dt.date.today())


@dataclass
class BatchResult:
    batch_id: int
    source_name: str
    clinic_id: str | None
    status: str  # loaded | failed | duplicate_file | superseded
    reason: str | None = None
    rows_received: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    rows_replaced: int = 0
    # The GX result of a loaded batch, written to TANDEM_HOME/validation/ after commit.
    report: ValidationOutcome | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        """The batch's outcome as plain values (what the flow returns and events carry)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "report"}

    @property
    def accounted(self) -> bool:
        return self.rows_received == self.rows_loaded + self.rows_quarantined + self.rows_duplicate


class FileFailed(Exception):
    def __init__(self, reason: str, clinic_id: str | None = None, fmt: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.clinic_id = clinic_id
        self.fmt = fmt


def resolve_contract(
    received: Received, clinic_hint: str | None, contracts: dict[str, ClinicContract]
) -> ClinicContract:
    """Which clinic sent this file: given, else its folder (``inbox/<clinic>/`` or any
    folder named after a clinic with a contract), else its rows' clinic id (a canonical
    CSV's ``clinic_id`` column). Anything else fails the file with a reason, never the run:
    the head of a YAML, a binary file or a manifest is just a file without a clinic."""
    if clinic_hint:
        if clinic_hint not in contracts:
            # Not passed on as the batch's clinic: an unknown id never names a folder.
            shown = repr(clinic_hint) if _CLINIC_LIKE.match(clinic_hint) else \
                "(the id given is not a clinic id)"
            raise FileFailed(
                f"unknown clinic {shown}: no contract in data_contracts/clinics/")
        return contracts[clinic_hint]
    parent = received.path.parent.name
    if parent in contracts:
        return contracts[parent]
    # A canonical CSV names its clinic in every row.
    ids = _clinic_ids_in_head(received.data[:65536])
    if ids:
        known = ids & contracts.keys()
        if len(known) == 1:
            return contracts[known.pop()]
        if not known:
            # quote only what looks like a clinic id: the column may hold something else
            shown = sorted(i for i in ids if _CLINIC_LIKE.match(i))[:3]
            raise FileFailed(
                f"unknown clinic {shown if shown else '(no clinic id Tandem knows)'}: no "
                f"contract in data_contracts/clinics/")
    raise FileFailed(
        "cannot tell which clinic sent this file: pass --clinic, or drop it in inbox/<clinic_id>/"
    )


_CLINIC_LIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _clinic_ids_in_head(head: bytes) -> set[str]:
    """The values of a ``clinic_id`` column in the complete records of a CSV's head; empty
    when the head is not a CSV with such a column (any text, any bytes: never raises)."""
    text = head.decode("utf-8-sig", errors="replace")
    if len(head) == 65536:  # the last record may be cut: drop it
        text = text[: text.rfind("\n") + 1]
    try:
        rows = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(rows, [])]
        if "clinic_id" not in header:
            return set()
        col = header.index("clinic_id")
        return {r[col].strip() for r in rows if len(r) > col and r[col].strip()}
    except csv.Error:
        return set()


def _pseudonymise(raw: pl.DataFrame, key: bytes) -> pl.DataFrame:
    """``client_id`` replaced by its keyed pseudonym (of the trimmed ids).

    The HMACs are computed once per distinct id, and joined back on the ids as received
    (no trimmed copy of every row's text is made)."""
    pairs = raw.select("clinic_id", "client_id").unique().drop_nulls()
    trimmed = pairs.select(pl.col("clinic_id").str.strip_chars(),
                           pl.col("client_id").str.strip_chars())
    mapping = pseudonym_map(key, trimmed.iter_rows())
    lookup = pairs.with_columns(client_key=pl.Series(
        "client_key", [mapping[p] for p in trimmed.iter_rows()], dtype=pl.String))
    return raw.join(lookup, on=["clinic_id", "client_id"], how="left",
                    maintain_order="left").drop("client_id")


_RAW_COLUMNS = ["clinic_id", "client_key", "therapist_id", "session_date", "session_number",
                "instrument", "item", "score"]


def _quarantine_rows(failures: pl.DataFrame, set_aside: pl.DataFrame, batch_id: int,
                     clinic_id: str, now: dt.datetime) -> pl.DataFrame:
    """One quarantine row per failed rule of a row, naming the administration set aside.

    ``raw_values`` is the failing row as received (client id already pseudonymised); when
    its record carried more items of the instrument, they come along under ``answers``.
    """
    units = set_aside.group_by(UNIT_KEY).agg(
        rows_set_aside=pl.len().cast(pl.Int64),
        answers=pl.struct("item", "score").sort_by(pl.col("item_int")),
    )
    rows = failures.join(set_aside.select(ROW_ID, "source_row", *_RAW_COLUMNS,
                                          *[c for c in UNIT_KEY if c not in _RAW_COLUMNS]),
                         on=ROW_ID, how="left")
    rows = rows.join(units, on=UNIT_KEY, how="left", nulls_equal=True)
    single = pl.struct(_RAW_COLUMNS).struct.json_encode()
    many = pl.struct(*_RAW_COLUMNS, "answers").struct.json_encode()
    return rows.select(
        pl.lit(batch_id, pl.Int64).alias("batch_id"),
        pl.lit(clinic_id).alias("clinic_id"),
        pl.col("source_row").cast(pl.Int64),
        "rule",
        "column_name",
        "reason",
        pl.when(pl.col("rows_set_aside") > 1).then(many).otherwise(single).alias("raw_values"),
        pl.lit(now).alias("quarantined_at"),
        "source_ref",
        "instrument",
        "rows_set_aside",
    )


# A validation run covers files up to this many rows (or files): one GX run, one writer.
CHUNK_ROWS = 1_000_000
CHUNK_FILES = 500


@dataclass
class _Prepared:
    """A received file, read and staged (or failed), waiting for its chunk's validation."""

    received: Received
    received_at: dt.datetime
    stored: Path
    contract: ClinicContract | None
    staged: pl.DataFrame | None
    failure: FileFailed | None
    notes: list[str]
    unique: pl.DataFrame | None = None
    duplicates: pl.DataFrame | None = None
    outcome: ValidationOutcome | None = None


def _prepare(path: Path, run: IngestRun, row_offset: int) -> _Prepared:
    """Receive, keep, read, pseudonymise and stage one file; row ids start at row_offset.

    Whatever the file holds, this returns: a file that is not a regular file, cannot be
    read, crashes or exhausts its reader (which runs in a worker process,
    :mod:`tandem.pipeline.sources.isolated`), or breaks staging, is a failed batch with a
    reason that names no contents; the other files of the run go on."""
    settings, contracts = run.settings, run.contracts
    received_at = dt.datetime.now(dt.UTC)
    try:
        received = receive(path)
    except FileRefused as exc:  # a link, a pipe, a device, gone: nothing is read or kept
        name = os.fsencode(path.name).decode("utf-8", "replace")
        received = Received(path, name, b"", hashlib.sha256(b"").hexdigest(), 0)
        failure = FileFailed(cut_text(f"{name} {exc.reason}"))
        # no copy is kept: the record's stored path names a place that never exists
        return _Prepared(received, received_at, settings.received_dir / NOT_KEPT, None, None,
                         failure, [])
    contract: ClinicContract | None = None
    staged: pl.DataFrame | None = None
    failure: FileFailed | None = None
    notes: list[str] = []
    try:
        contract = resolve_contract(received, run.clinic_hint, contracts)
        stored = keep_copy(received, settings.received_dir / contract.clinic_id)
        try:
            raw, notes = read_isolated(stored, contract, received.source_name, settings)
            raw, _ = cap_values(_pseudonymise(raw, run.key))
            staged = stage_rows(raw, contract.date_format)
        except SourceError as exc:
            raise FileFailed(cut_text(str(exc)), contract.clinic_id, contract.format) from None
        except ReadFailed as exc:
            raise FileFailed(cut_text(str(exc)), contract.clinic_id, contract.format) from None
        except Exception as exc:  # noqa: BLE001 - a contract that does not fit the file
            raise FileFailed(
                f"{received.source_name} cannot be read under the clinic's {contract.format} "
                f"contract ({type(exc).__name__}; details withheld: they may quote the file)",
                contract.clinic_id, contract.format) from None
        except BaseException as exc:  # a Rust panic in staging is a BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            raise FileFailed(
                f"{received.source_name} could not be staged ({type(exc).__name__}); the file "
                f"may be damaged or crafted", contract.clinic_id, contract.format) from None
        if row_offset:
            staged = staged.with_columns(pl.col(ROW_ID) + row_offset)
    except FileFailed as exc:
        failure = exc
        staged = None
        folder = exc.clinic_id if exc.clinic_id in contracts else "_unknown"
        stored = keep_copy(received, settings.received_dir / folder)
    # The bytes are kept (stored) and hashed: the chunk needs neither again.
    received = replace(received, data=b"")
    return _Prepared(received, received_at, stored, contract, staged, failure, notes)


def process_file(path: Path, run: IngestRun) -> BatchResult:
    """One file, one batch, one transaction. Never raises for bad input: it records it."""
    return process_files([path], run)[0]


def process_files(
    paths: list[Path],
    run: IngestRun,
    on_result: Callable[[BatchResult], None] | None = None,
    chunk_rows: int | None = None,
    chunk_files: int | None = None,
) -> list[BatchResult]:
    """Files in order, each its own batch and transaction; validated in chunks.

    Files are read and staged until a chunk holds ``chunk_rows`` rows or ``chunk_files``
    files; the chunk's rows (numbered globally) go through Great Expectations in one run,
    then each file is loaded in its own transaction, in order, exactly as
    :func:`process_file` would have loaded it alone. ``on_result`` is called per file.
    """
    if paths:
        warm_up_validator()  # GX's import overlaps with reading the first files
    chunk_rows = chunk_rows or CHUNK_ROWS
    chunk_files = chunk_files or CHUNK_FILES
    results: list[BatchResult] = []
    chunk: list[_Prepared] = []
    rows = 0
    for path in paths:
        item = _prepare(path, run, row_offset=rows)
        chunk.append(item)
        rows += item.staged.height if item.staged is not None else 0
        if rows >= chunk_rows or len(chunk) >= chunk_files:
            results += _process_chunk(chunk, run, on_result)
            chunk, rows = [], 0
    if chunk:
        results += _process_chunk(chunk, run, on_result)
    return results


def ingest_paths(paths: list[str], clinic_id: str | None = None, trigger: str = "cli",
                 as_of: str | None = None, *, settings: Settings, flow_run_id: str | None = None,
                 on_result: Callable[[BatchResult], None] | None = None) -> list[dict]:
    """Ingest files (each its own batch); one summary per file, in order.

    What the ``ingest`` flow's task runs, with its parameters as plain values; ``as_of``
    is YYYY-MM-DD (default today)."""
    run = IngestRun.load(settings, clinic_hint=clinic_id, trigger=trigger,
                         flow_run_id=flow_run_id,
                         as_of=dt.date.fromisoformat(as_of) if as_of else None)
    results = process_files([Path(p) for p in paths], run, on_result=on_result)
    return [r.summary() for r in results]


def _process_chunk(chunk: list[_Prepared], run: IngestRun,
                   on_result: Callable[[BatchResult], None] | None) -> list[BatchResult]:
    """Validate the chunk's staged files in one GX run, then load the chunk in one lake
    transaction (each file its own batch, accounted for on its own)."""
    settings = run.settings
    todo = [p for p in chunk if p.staged is not None and p.contract is not None]
    for p in todo:
        assert p.staged is not None
        unique, p.duplicates = split_exact_duplicates(p.staged)
        p.unique = add_contract_columns(unique, run.instruments)
        p.staged = None
    if todo:
        outcomes = check_many(  # Polars decides; GX runs only for the reports, after commit
            [(p.unique, p.contract) for p in todo], run.instruments, run.as_of,
            settings.rules_path)
        for p, outcome in zip(todo, outcomes, strict=True):
            p.outcome = outcome
    clinics = sorted({p.contract.clinic_id for p in chunk if p.contract is not None})
    with warehouse.writer(settings) as con:
        ids = warehouse.allocate_batch_ids(con, len(chunk))

        def load(c: duckdb.DuckDBPyConnection) -> list[BatchResult]:
            # Everything read here is read again on a retry (another load of these clinics
            # committed first): the checks then see what it loaded.
            check_key(c, run.key)  # never load under another key than the warehouse's
            known = LoadedAnswers(c, [p.unique for p in todo if p.unique is not None])
            ledger = _Ledger(c, clinics, [p.received.sha256 for p in todo])
            writes = _Writes()
            results = [_plan(p, batch_id, run, known, ledger, writes)
                       for p, batch_id in zip(chunk, ids, strict=True)]
            writes.insert(c)
            return results

        results = warehouse.run_locked(
            con, clinics, load, what=f"load {len(chunk)} file(s)",
            message=("ingest", {"batches": ids, "trigger": run.trigger}), faults="")
    for p, result in zip(chunk, results, strict=True):
        p.unique = p.duplicates = p.outcome = None
        if result.status == "loaded" and result.report is not None:
            # GX confirms the committed quarantine (one run for the chunk, on its failing
            # rows) and its result becomes the batch's report
            write_batch_report(settings.validation_dir, result.batch_id,
                               result.clinic_id or "_unknown", result.source_name,
                               result.report.result_json, result.summary())
        result.report = None
        if on_result:
            on_result(result)
    return results


class _Ledger:
    """What the warehouse says of the chunk's clinics, read once, kept current as the chunk
    is planned: which bytes are loaded already, and which version of each series is."""

    def __init__(self, con: duckdb.DuckDBPyConnection, clinics: list[str],
                 hashes: list[str]) -> None:
        self.same_bytes: dict[tuple[str, str], int] = {}
        self.current: dict[str, dict[int, str]] = {c: {} for c in clinics}
        if not clinics:
            return
        wanted = pl.DataFrame({"h": sorted(set(hashes))}, schema={"h": pl.String})
        with warehouse.registered(con, "_chunk_hashes", wanted):
            for clinic, sha, batch in con.execute(
                    "SELECT clinic_id, content_sha256, min(batch_id) FROM batch "
                    "WHERE clinic_id IN (SELECT unnest(?)) AND status IN ('loaded', 'superseded') "
                    "AND trigger <> 'reprocess' "
                    "AND content_sha256 IN (SELECT h FROM _chunk_hashes) GROUP BY 1, 2",
                    [clinics]).fetchall():
                self.same_bytes[(clinic, sha)] = int(batch)
        # A reprocess batch (tandem reprocess) is no delivery of its own: it belongs to the
        # batch whose quarantined rows it loaded, and leaves with it when that is replaced.
        for clinic, batch, name in con.execute(
                "SELECT clinic_id, batch_id, source_name FROM batch WHERE clinic_id IN "
                "(SELECT unnest(?)) AND status = 'loaded' AND trigger <> 'reprocess'",
                [clinics]).fetchall():
            self.current[clinic][int(batch)] = name
        self.reprocessed: dict[int, set[int]] = {}
        if warehouse.has_table(con, "quarantine_resolution"):
            for origin, batch in con.execute(
                    "SELECT DISTINCT r.batch_id, r.resolved_by_batch_id "
                    "FROM quarantine_resolution r JOIN batch b "
                    "ON b.batch_id = r.resolved_by_batch_id "
                    "WHERE b.clinic_id IN (SELECT unnest(?)) AND b.status = 'loaded'",
                    [clinics]).fetchall():
                self.reprocessed.setdefault(int(origin), set()).add(int(batch))

    def followers(self, batch_id: int) -> list[int]:
        """The reprocess batches that loaded quarantined rows of ``batch_id`` (and of those,
        in turn): they are replaced with it."""
        found: set[int] = set()
        todo = [batch_id]
        while todo:
            for nxt in self.reprocessed.get(todo.pop(), ()):
                if nxt not in found:
                    found.add(nxt)
                    todo.append(nxt)
        return sorted(found)

    def loaded(self, clinic: str, sha: str, batch_id: int, name: str,
               replaces: int | None) -> None:
        self.same_bytes.setdefault((clinic, sha), batch_id)
        self.current[clinic][batch_id] = name
        if replaces is not None:
            self.current[clinic].pop(replaces, None)


@dataclass
class _Writes:
    """The chunk's rows for every table, inserted together at the end of its transaction."""

    batches: list[dict] = field(default_factory=list)
    supersessions: list[dict] = field(default_factory=list)
    frames: dict[str, list[pl.DataFrame]] = field(default_factory=lambda: {
        "response_row": [], "reported_total_row": [], "quarantine": [],
        "validation_result": []})

    def insert(self, con: duckdb.DuckDBPyConnection) -> None:
        for table in ("response_row", "reported_total_row"):
            parts = [f for f in self.frames[table] if f.height]
            if parts:
                warehouse.insert_frame(con, table, pl.concat(parts, how="vertical_relaxed"))
        fault_point("after_insert_response")
        for table in ("quarantine", "validation_result"):
            parts = [f for f in self.frames[table] if f.height]
            if parts:
                warehouse.insert_frame(con, table, pl.concat(parts, how="diagonal_relaxed"))
        if self.supersessions:
            warehouse.insert_frame(con, "batch_supersession", pl.DataFrame(
                self.supersessions, schema=_SUPERSESSION_SCHEMA, orient="row"))
        warehouse.insert_frame(con, "batch_record", pl.DataFrame(
            self.batches, schema=_BATCH_SCHEMA, orient="row"))
        fault_point("after_insert_batch")


_BATCH_SCHEMA = {
    "batch_id": pl.Int64, "clinic_id": pl.String, "source_name": pl.String,
    "stored_path": pl.String, "content_sha256": pl.String, "size_bytes": pl.Int64,
    "format": pl.String, "received_at": pl.Datetime("us", "UTC"),
    "finished_at": pl.Datetime("us", "UTC"), "status": pl.String, "reason": pl.String,
    "rows_received": pl.Int64, "rows_loaded": pl.Int64, "rows_quarantined": pl.Int64,
    "rows_duplicate": pl.Int64, "rows_replaced": pl.Int64, "replaces_batch_id": pl.Int64,
    "duplicate_of_batch_id": pl.Int64, "trigger": pl.String, "flow_run_id": pl.String,
}
_SUPERSESSION_SCHEMA = {"batch_id": pl.Int64, "superseded_by_batch_id": pl.Int64,
                        "superseded_at": pl.Datetime("us", "UTC")}


def _plan(p: _Prepared, batch_id: int, run: IngestRun, known: LoadedAnswers, ledger: _Ledger,
          writes: _Writes) -> BatchResult:
    """One prepared file's batch: its outcome, and its rows added to ``writes``."""
    contract, failure, received = p.contract, p.failure, p.received
    result = BatchResult(batch_id, received.source_name,
                         contract.clinic_id if contract else (failure and failure.clinic_id),
                         "failed")
    record = {
        "batch_id": batch_id, "clinic_id": result.clinic_id,
        "source_name": received.source_name, "stored_path": str(p.stored),
        "content_sha256": received.sha256, "size_bytes": received.size_bytes,
        "format": contract.format if contract else None, "received_at": p.received_at,
        "trigger": run.trigger, "flow_run_id": run.flow_run_id,
    }
    if failure is not None:
        result.reason = failure.reason
        _record_batch(writes, record, result, None, None, None)
        return result
    assert contract is not None and p.unique is not None and p.duplicates is not None
    assert p.outcome is not None
    return _load(record, result, contract, p.unique, p.duplicates, p.outcome, received, known,
                 ledger, writes, p.notes)


def _load(record: dict, result: BatchResult, contract: ClinicContract, unique: pl.DataFrame,
          duplicates: pl.DataFrame, outcome: ValidationOutcome, received: Received,
          known: LoadedAnswers, ledger: _Ledger, writes: _Writes,
          notes: list[str] | None = None) -> BatchResult:
    now = dt.datetime.now(dt.UTC)
    received_rows = unique.height + duplicates.height
    result.rows_received = received_rows
    clinic = contract.clinic_id

    # The same bytes delivered again change nothing.
    dup = ledger.same_bytes.get((clinic, received.sha256))
    if dup is not None:
        result.status, result.rows_duplicate = "duplicate_file", received_rows
        result.reason = f"identical to batch {dup} (same content hash)"
        _record_batch(writes, record, result, None, None, dup)
        return result

    # A corrected re-send replaces the series' loaded version; an older version arriving
    # after a newer one loads nothing.
    series, version = version_key(received.source_name)
    replaces = None
    for bid, name in sorted(ledger.current.get(clinic, {}).items()):
        s, v = version_key(name)
        if s != series:
            continue
        if v > version:
            result.status, result.rows_duplicate = "superseded", received_rows
            result.reason = f"a newer version of this file ({name}, batch {bid}) is already loaded"
            _record_batch(writes, record, result, None, None, None)
            ledger.same_bytes.setdefault((clinic, received.sha256), result.batch_id)
            return result
        replaces = bid

    # A failing row sets aside its whole administration in that record (UNIT_KEY): a
    # questionnaire is loaded whole or not at all.
    failed_units = _only(unique, outcome.failures.select(ROW_ID).unique(), ROW_ID).select(
        UNIT_KEY).unique()
    set_aside = _only(unique, failed_units, UNIT_KEY)
    candidates = _without(unique, set_aside.select(ROW_ID))

    # What a corrected re-send replaces: the loaded version, and the reprocess batches that
    # loaded its quarantined rows later.
    followers = ledger.followers(replaces) if replaces is not None else []
    known.forget(followers)

    # Rows already loaded from other batches: identical ones are duplicates, different
    # ones conflict and are quarantined for a person to resolve.
    clash = known.clash(candidates, replaces)
    same = clash.filter(pl.col("loaded") == pl.col("score_num"))
    differ = clash.filter(pl.col("loaded") != pl.col("score_num"))
    conflicts = differ.select(
        ROW_ID,
        rule=pl.lit("consistent_with_loaded_rows"),
        column_name=pl.lit("score"),
        reason=pl.format("an answer to {} {} at this session was already loaded from batch {} "
                         "with {} {}", pl.col("instrument"), pl.col("what"),
                         pl.col("batch_id"), pl.col("what_value"), pl.col("loaded")),
    ).unique(ROW_ID)
    conflict_units = _only(candidates, conflicts.select(ROW_ID), ROW_ID).select(
        UNIT_KEY).unique()
    conflicted = _only(candidates, conflict_units, UNIT_KEY)
    set_aside = pl.concat([set_aside, conflicted], how="diagonal_relaxed")
    candidates = _without(candidates, conflicted.select(ROW_ID))
    already = _only(candidates, same.select(ROW_ID), ROW_ID)
    to_load = _without(candidates, already.select(ROW_ID))

    failures = pl.concat([outcome.failures, conflicts.cast(outcome.failures.schema)])
    quarantine = _quarantine_rows(failures, set_aside, result.batch_id, clinic, now)
    result.rows_quarantined = set_aside.height
    result.rows_duplicate = duplicates.height + already.height
    result.rows_loaded = to_load.height
    reasons = list(notes or [])
    if replaces is not None:
        result.rows_replaced = sum(known.rows_of(b) for b in [replaces, *followers])
        for gone in [replaces, *followers]:
            writes.supersessions.append({"batch_id": gone,
                                         "superseded_by_batch_id": result.batch_id,
                                         "superseded_at": now})
        reasons.insert(0, f"replaces batch {replaces}")
    result.reason = "; ".join(reasons) or None
    if not result.accounted:  # a bug, not bad input: refuse to commit a batch that loses rows
        raise RuntimeError(f"row accounting does not hold for {received.source_name}: {result}")
    result.status = "loaded"

    writes.frames["response_row"].append(to_response_rows(to_load, result.batch_id))
    writes.frames["reported_total_row"].append(to_reported_total_rows(to_load, result.batch_id))
    writes.frames["quarantine"].append(quarantine)
    _record_batch(writes, record, result, outcome.summary, now, None, replaces)
    known.loaded(to_load, result.batch_id, replaces)
    ledger.loaded(clinic, received.sha256, result.batch_id, received.source_name, replaces)
    result.report = outcome  # its GX result is made after commit
    return result


def _only(frame: pl.DataFrame, keys: pl.DataFrame, on: str | list[str]) -> pl.DataFrame:
    """Rows of frame whose key is in keys (a semi-join; no scan when keys is empty)."""
    if keys.is_empty():
        return frame.clear()
    return frame.join(keys, on=on, how="semi", nulls_equal=True)


def _without(frame: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Rows of frame whose row id is not in ids (an anti-join; frame itself if ids is empty)."""
    if ids.is_empty():
        return frame
    return frame.join(ids, on=ROW_ID, how="anti")


def _record_batch(writes: _Writes, record: dict, result: BatchResult,
                  summary: list[dict] | None, validated_at: dt.datetime | None,
                  duplicate_of: int | None, replaces: int | None = None) -> None:
    writes.batches.append({
        **record, "finished_at": dt.datetime.now(dt.UTC), "status": result.status,
        "reason": result.reason, "rows_received": result.rows_received,
        "rows_loaded": result.rows_loaded, "rows_quarantined": result.rows_quarantined,
        "rows_duplicate": result.rows_duplicate, "rows_replaced": result.rows_replaced,
        "replaces_batch_id": replaces, "duplicate_of_batch_id": duplicate_of,
    })
    if summary:
        writes.frames["validation_result"].append(pl.DataFrame(
            {"batch_id": [result.batch_id] * len(summary),
             "rule": [s["rule"] for s in summary],
             "expectation_type": [s["expectation_type"] for s in summary],
             "column_name": [s["column_name"] for s in summary],
             "success": [bool(s["success"]) for s in summary],
             "element_count": [s["element_count"] for s in summary],
             "unexpected_count": [s["unexpected_count"] for s in summary],
             "validated_at": [validated_at] * len(summary)},
            schema={"batch_id": pl.Int64, "rule": pl.String, "expectation_type": pl.String,
                    "column_name": pl.String, "success": pl.Boolean,
                    "element_count": pl.Int64, "unexpected_count": pl.Int64,
                    "validated_at": pl.Datetime("us", "UTC")}))
