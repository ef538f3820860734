"""The ``ingest`` flow: files in, validated rows in the warehouse, the rest quarantined.

For each file: keep a copy, read it with its clinic's contract, pseudonymise client ids,
stage, validate with Great Expectations, set aside duplicates, then load the batch in
one DuckDB transaction (rows, quarantine, validation results and the batch record
together, or nothing). Every received file ends with a batch record and an outcome.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import duckdb
import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context

from flows.events import emit_batch_finished
from flows.loaded_answers import LoadedAnswers
from flows.sources import SourceError, reader_for, split_notes
from tandem import warehouse
from tandem.contracts import ClinicContract, Instrument, load_clinic_contracts, load_instruments
from tandem.faults import fault_point
from tandem.files import Received, keep_copy, receive, version_key
from tandem.pseudonym import check_key, load_key, pseudonym_map
from tandem.settings import Settings, get_settings
from tandem.validation import (
    ValidationOutcome,
    get_validator,
    warm_up_validator,
    write_batch_report,
)
from transforms.staging import (
    ROW_ID,
    UNIT_KEY,
    add_contract_columns,
    split_exact_duplicates,
    stage_rows,
    to_reported_total_rows,
    to_response_rows,
)

# Set by the command line to draw a progress bar; called after each file.
progress_hook: Callable[[BatchResult], None] | None = None


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
    report: dict | None = field(default=None, repr=False, compare=False)

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
    folder named after a clinic with a contract), else its rows' clinic id."""
    if clinic_hint:
        if clinic_hint not in contracts:
            # Not passed on as the batch's clinic: an unknown id never names a folder.
            raise FileFailed(
                f"unknown clinic {clinic_hint!r}: no contract in data_contracts/clinics/")
        return contracts[clinic_hint]
    parent = received.path.parent.name
    if parent in contracts:
        return contracts[parent]
    # A canonical CSV names its clinic in every row.
    head = received.data[:65536].decode("utf-8-sig", errors="replace").splitlines()
    if head and "clinic_id" in head[0]:
        col = [h.strip().strip('"').lower() for h in head[0].split(",")].index("clinic_id")
        ids = {line.split(",")[col].strip().strip('"') for line in head[1:]
               if line.count(",") > col}
        known = ids & contracts.keys()
        if len(known) == 1:
            return contracts[known.pop()]
        if ids and not known:
            raise FileFailed(
                f"unknown clinic {sorted(ids)[:3]}: no contract in data_contracts/clinics/")
    raise FileFailed(
        "cannot tell which clinic sent this file: pass --clinic, or drop it in inbox/<clinic_id>/"
    )


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
# Files per Prefect task run of the ``ingest`` flow.
FLOW_CHUNK_FILES = 500


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


def _prepare(path: Path, *, settings: Settings, contracts: dict[str, ClinicContract],
             key: bytes, clinic_hint: str | None, row_offset: int) -> _Prepared:
    """Receive, keep, read, pseudonymise and stage one file; row ids start at row_offset."""
    received = receive(path)
    received_at = dt.datetime.now(dt.UTC)
    contract: ClinicContract | None = None
    staged: pl.DataFrame | None = None
    failure: FileFailed | None = None
    notes: list[str] = []
    try:
        contract = resolve_contract(received, clinic_hint, contracts)
        stored = keep_copy(received, settings.received_dir / contract.clinic_id)
        try:
            raw, notes = split_notes(
                reader_for(contract.format)(received.data, contract, received.source_name))
        except SourceError as exc:
            raise FileFailed(str(exc), contract.clinic_id, contract.format) from exc
        except Exception as exc:  # a contract that does not fit the file: record, never crash
            raise FileFailed(
                f"{received.source_name} cannot be read under the clinic's {contract.format} "
                f"contract ({type(exc).__name__}: {str(exc)[:200]})",
                contract.clinic_id, contract.format) from exc
        staged = stage_rows(_pseudonymise(raw, key), contract.date_format)
        if row_offset:
            staged = staged.with_columns(pl.col(ROW_ID) + row_offset)
    except FileFailed as exc:
        failure = exc
        folder = exc.clinic_id if exc.clinic_id in contracts else "_unknown"
        stored = keep_copy(received, settings.received_dir / folder)
    # The bytes are kept (stored) and hashed: the chunk needs neither again.
    received = replace(received, data=b"")
    return _Prepared(received, received_at, stored, contract, staged, failure, notes)


def process_file(
    path: Path,
    *,
    settings: Settings,
    contracts: dict[str, ClinicContract],
    instruments: dict[str, Instrument],
    key: bytes,
    clinic_hint: str | None = None,
    trigger: str = "cli",
    flow_run_id: str | None = None,
    as_of: dt.date | None = None,
) -> BatchResult:
    """One file, one batch, one transaction. Never raises for bad input: it records it."""
    return process_files([path], settings=settings, contracts=contracts,
                         instruments=instruments, key=key, clinic_hint=clinic_hint,
                         trigger=trigger, flow_run_id=flow_run_id, as_of=as_of)[0]


def process_files(
    paths: list[Path],
    *,
    settings: Settings,
    contracts: dict[str, ClinicContract],
    instruments: dict[str, Instrument],
    key: bytes,
    clinic_hint: str | None = None,
    trigger: str = "cli",
    flow_run_id: str | None = None,
    as_of: dt.date | None = None,
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
    as_of = as_of or dt.date.today()
    if paths:
        warm_up_validator()  # GX's import overlaps with reading the first files
    chunk_rows = chunk_rows or CHUNK_ROWS
    chunk_files = chunk_files or CHUNK_FILES
    results: list[BatchResult] = []
    chunk: list[_Prepared] = []
    rows = 0
    for path in paths:
        item = _prepare(path, settings=settings, contracts=contracts, key=key,
                        clinic_hint=clinic_hint, row_offset=rows)
        chunk.append(item)
        rows += item.staged.height if item.staged is not None else 0
        if rows >= chunk_rows or len(chunk) >= chunk_files:
            results += _process_chunk(chunk, settings, instruments, key, trigger, flow_run_id,
                                      as_of, on_result)
            chunk, rows = [], 0
    if chunk:
        results += _process_chunk(chunk, settings, instruments, key, trigger, flow_run_id, as_of,
                                  on_result)
    return results


def _process_chunk(chunk: list[_Prepared], settings: Settings,
                   instruments: dict[str, Instrument], key: bytes, trigger: str,
                   flow_run_id: str | None,
                   as_of: dt.date, on_result: Callable[[BatchResult], None] | None,
                   ) -> list[BatchResult]:
    """Validate the chunk's staged files in one GX run, then load each file in turn."""
    todo = [p for p in chunk if p.staged is not None and p.contract is not None]
    for p in todo:
        assert p.staged is not None
        unique, p.duplicates = split_exact_duplicates(p.staged)
        p.unique = add_contract_columns(unique, instruments)
        p.staged = None
    if todo:
        outcomes = get_validator().validate_many(
            [(p.unique, p.contract) for p in todo], instruments, as_of,
            settings.contracts_dir / "rules.yaml")
        for p, outcome in zip(todo, outcomes, strict=True):
            p.outcome = outcome
    results = []
    with warehouse.writer(settings) as con:
        check_key(con, key)  # never load under another key than the warehouse's pseudonyms
        # one look-up of loaded answers for the whole chunk (see flows/loaded_answers.py)
        known = LoadedAnswers(con, [p.unique for p in todo if p.unique is not None])
        for p in chunk:
            result = _load_prepared(con, p, trigger, flow_run_id, settings, known)
            # free the file's rows before the next one
            p.unique = p.duplicates = p.outcome = None
            if result.status == "loaded":
                _write_validation_report(settings, result, result.clinic_id or "_unknown")
                result.report = None
            results.append(result)
            if on_result:
                on_result(result)
    return results


def _load_prepared(con: duckdb.DuckDBPyConnection, p: _Prepared, trigger: str,
                   flow_run_id: str | None, settings: Settings,
                   known: LoadedAnswers) -> BatchResult:
    """One prepared file: its batch record, and its rows in one transaction."""
    contract, failure, received = p.contract, p.failure, p.received
    batch_id = con.execute("SELECT nextval('batch_id_seq')").fetchone()[0]
    base = BatchResult(batch_id, received.source_name,
                       contract.clinic_id if contract else (failure and failure.clinic_id),
                       "failed")
    record = {
        "batch_id": batch_id, "clinic_id": base.clinic_id,
        "source_name": received.source_name, "stored_path": str(p.stored),
        "content_sha256": received.sha256, "size_bytes": received.size_bytes,
        "format": contract.format if contract else None, "received_at": p.received_at,
        "trigger": trigger, "flow_run_id": flow_run_id,
    }
    if failure is not None:
        base.reason = failure.reason
        _insert_batch(con, record, base, None, None, None)
        return base
    assert contract is not None and p.unique is not None and p.duplicates is not None
    assert p.outcome is not None
    with warehouse.transaction(con):
        return _load(con, record, base, contract, p.unique, p.duplicates, p.outcome,
                     received, known, p.notes)


def _load(con: duckdb.DuckDBPyConnection, record: dict, result: BatchResult,
          contract: ClinicContract, unique: pl.DataFrame, duplicates: pl.DataFrame,
          outcome: ValidationOutcome, received: Received, known: LoadedAnswers,
          notes: list[str] | None = None) -> BatchResult:
    now = dt.datetime.now(dt.UTC)
    received_rows = unique.height + duplicates.height
    result.rows_received = received_rows
    clinic = contract.clinic_id

    # The same bytes delivered again change nothing.
    dup = con.execute(
        "SELECT min(batch_id) FROM batch WHERE clinic_id = ? AND content_sha256 = ? "
        "AND status IN ('loaded', 'superseded')",
        [clinic, received.sha256],
    ).fetchone()[0]
    if dup is not None:
        result.status, result.rows_duplicate = "duplicate_file", received_rows
        result.reason = f"identical to batch {dup} (same content hash)"
        _insert_batch(con, record, result, None, None, dup)
        return result

    # A corrected re-send replaces the series' loaded version; an older version arriving
    # after a newer one loads nothing.
    series, version = version_key(received.source_name)
    loaded_versions = con.execute(
        "SELECT batch_id, source_name FROM batch WHERE clinic_id = ? AND status = 'loaded' "
        "AND superseded_by_batch_id IS NULL",
        [clinic],
    ).fetchall()
    replaces = None
    for bid, name in loaded_versions:
        s, v = version_key(name)
        if s != series:
            continue
        if v > version:
            result.status, result.rows_duplicate = "superseded", received_rows
            result.reason = f"a newer version of this file ({name}, batch {bid}) is already loaded"
            _insert_batch(con, record, result, None, None, None)
            return result
        replaces = bid

    # A failing row sets aside its whole administration in that record (UNIT_KEY): a
    # questionnaire is loaded whole or not at all.
    failed_units = _only(unique, outcome.failures.select(ROW_ID).unique(), ROW_ID).select(
        UNIT_KEY).unique()
    set_aside = _only(unique, failed_units, UNIT_KEY)
    candidates = _without(unique, set_aside.select(ROW_ID))

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
        result.rows_replaced = con.execute(
            "SELECT (SELECT count(*) FROM response WHERE batch_id = $1)"
            " + (SELECT count(*) FROM reported_total WHERE batch_id = $1)", [replaces]
        ).fetchone()[0]
        con.execute("DELETE FROM response WHERE batch_id = ?", [replaces])
        con.execute("DELETE FROM reported_total WHERE batch_id = ?", [replaces])
        con.execute(
            "UPDATE batch SET superseded_by_batch_id = ?, status = 'superseded' WHERE batch_id = ?",
            [result.batch_id, replaces],
        )
        reasons.insert(0, f"replaces batch {replaces}")
    result.reason = "; ".join(reasons) or None
    if not result.accounted:  # a bug, not bad input: refuse to commit a batch that loses rows
        raise RuntimeError(f"row accounting does not hold for {received.source_name}: {result}")
    result.status = "loaded"

    warehouse.insert_frame(con, "response", to_response_rows(to_load, result.batch_id))
    fault_point("after_insert_response")
    warehouse.insert_frame(con, "reported_total", to_reported_total_rows(to_load, result.batch_id))
    warehouse.insert_frame(con, "quarantine", quarantine)
    _insert_batch(con, record, result, outcome.summary, now, None, replaces)
    fault_point("after_insert_batch")
    known.loaded(to_load, result.batch_id, replaces)
    result.report = outcome.result_json
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


def _insert_batch(con: duckdb.DuckDBPyConnection, record: dict, result: BatchResult,
                  summary: list[dict] | None, validated_at: dt.datetime | None,
                  duplicate_of: int | None, replaces: int | None = None) -> None:
    con.execute(
        """
        INSERT INTO batch (batch_id, clinic_id, source_name, stored_path, content_sha256,
            size_bytes, format, received_at, finished_at, status, reason, rows_received,
            rows_loaded, rows_quarantined, rows_duplicate, rows_replaced, replaces_batch_id,
            duplicate_of_batch_id, trigger, flow_run_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [record["batch_id"], record["clinic_id"], record["source_name"], record["stored_path"],
         record["content_sha256"], record["size_bytes"], record["format"],
         record["received_at"], result.status, result.reason, result.rows_received,
         result.rows_loaded, result.rows_quarantined, result.rows_duplicate,
         result.rows_replaced, replaces, duplicate_of, record["trigger"],
         record["flow_run_id"]],
    )
    if summary:
        # one statement for all rules (executemany runs one INSERT per row)
        warehouse.insert_frame(con, "validation_result", pl.DataFrame(
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


def _write_validation_report(settings: Settings, result: BatchResult, clinic_id: str) -> None:
    """Keep the GX result (JSON) and its readable page for the quality team."""
    write_batch_report(settings.validation_dir, result.batch_id, clinic_id, result.source_name,
                       result.report or {}, result.summary())


def _log_result(result: BatchResult) -> None:
    logger = get_run_logger()
    level = logging.WARNING if result.status == "failed" else logging.INFO
    logger.log(level, "%s: %s (received %d, loaded %d, quarantined %d, duplicate %d)%s",
               result.source_name, result.status, result.rows_received, result.rows_loaded,
               result.rows_quarantined, result.rows_duplicate,
               f": {result.reason}" if result.reason else "")
    if progress_hook:
        progress_hook(result)


def _load_paths(paths: list[str], clinic_id: str | None, trigger: str,
                as_of: str | None) -> list[dict]:
    settings = get_settings()
    ctx = get_run_context()
    flow_run_id = str(ctx.task_run.flow_run_id) if getattr(ctx, "task_run", None) else None
    results = process_files(
        [Path(p) for p in paths], settings=settings, contracts=load_clinic_contracts(settings),
        instruments=load_instruments(settings), key=load_key(settings), clinic_hint=clinic_id,
        trigger=trigger, flow_run_id=flow_run_id,
        as_of=dt.date.fromisoformat(as_of) if as_of else None, on_result=_log_result,
    )
    return [r.summary() for r in results]


@task(name="load-file", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=lambda task, run, state: _is_transient(state))
def load_file(path: str, clinic_id: str | None, trigger: str, as_of: str | None = None) -> dict:
    """One file as its own task run (see :func:`load_files` for many)."""
    return _load_paths([path], clinic_id, trigger, as_of)[0]


@task(name="load-files", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=lambda task, run, state: _is_transient(state))
def load_files(paths: list[str], clinic_id: str | None, trigger: str,
               as_of: str | None = None) -> list[dict]:
    """A chunk of files: validated together, each loaded as its own batch (in order).

    A retry re-runs the chunk: files it already committed come back ``duplicate_file``.
    """
    return _load_paths(paths, clinic_id, trigger, as_of)


def _is_transient(state) -> bool:
    """Retry only what may pass by itself (a lock wait, an I/O hiccup), never bad input."""
    try:
        state.result()
    except (TimeoutError, OSError, duckdb.IOException):
        return True
    except Exception:
        return False
    return False


@flow(name="ingest", log_prints=True)
def ingest(
    paths: list[str], clinic_id: str | None = None, trigger: str = "cli", as_of: str | None = None
) -> list[dict]:
    """Ingest files (each its own batch). Returns one summary per file.

    ``as_of`` (YYYY-MM-DD, default today) is the date a session may not be after.
    """
    results: list[dict] = []
    # One task run per chunk of files (a task run per file costs more than a small file's
    # load); process_files validates each chunk in few GX runs and logs every file.
    for start in range(0, len(paths), FLOW_CHUNK_FILES):
        for summary in load_files(paths[start:start + FLOW_CHUNK_FILES], clinic_id, trigger,
                                  as_of):
            results.append(summary)
            # --- events (flows/events.py): a finished batch may make the marts stale ---
            emit_batch_finished(results[-1], trigger)
    return results
