"""Reprocess: quarantined rows validated again after a contract or roster change.

The common case: a therapist joined before the clinic's roster said so. Every row naming
them was quarantined (``known_therapist``), and delivering the file again changes nothing
(the same bytes are a ``duplicate_file``). After the roster is fixed, ``reprocess``
rebuilds each open quarantined administration (``source_ref`` + ``instrument`` of a batch)
from its quarantine rows' raw values (already pseudonymised: no raw file is needed, so it
works after the retention purge too), stages and validates it under the *current*
contracts, and per original batch records one batch of its own (trigger ``reprocess``,
same file name, hash and kept path as the original) in one locked lake transaction:

* administrations that now pass are loaded, unless their answers are loaded already
  (then they are duplicates, never loaded twice); an answer that conflicts with a loaded
  one is quarantined again, as an ingest would;
* administrations that still fail for other reasons than before are quarantined again
  under the new batch with the current reasons;
* each of those gets a ``quarantine_resolution`` row (outcome ``loaded``, ``duplicate``,
  ``requarantined``), so it is never reprocessed again; administrations that fail for the
  same rules as before are left as they are (open, untouched), and an original batch
  with nothing that changed gets no batch at all: a second reprocess does nothing.

Exactly once, also under two concurrent runs: the open administrations are read again
inside the transaction that holds the clinic's lock (``warehouse.run_locked``), so the
second of two runs retries, sees what the first resolved, and leaves it.

A reader's own complaint (``record_readable``: an answer code the reader could not map)
is carried over as it was: only a new delivery of the file can change it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import duckdb
import polars as pl

from tandem.core import warehouse
from tandem.core.contracts import (
    ClinicContract,
    Instrument,
    load_clinic_contracts,
    load_instruments,
)
from tandem.core.pseudonym import check_key, load_key
from tandem.core.settings import Settings
from tandem.pipeline.ingest import (
    _only,
    _quarantine_rows,
    _record_batch,
    _without,
    _Writes,
)
from tandem.pipeline.loaded_answers import LoadedAnswers
from tandem.quality.contract import validate_many
from tandem.quality.reports import write_batch_report
from transforms.staging import (
    ROW_ID,
    UNIT_KEY,
    add_contract_columns,
    stage_rows,
    to_reported_total_rows,
    to_response_rows,
)

TRIGGER = "reprocess"
RESOLUTION = "quarantine_resolution"
_RAW_TEXT = ["clinic_id", "client_key", "therapist_id", "session_date", "session_number",
             "instrument", "item", "score"]
_UNIT = ["batch_id", "source_ref", "instrument"]


@dataclass(frozen=True)
class Scope:
    """Which quarantined rows to look at: all open ones, or those of some clinics, batches
    or rules (a rule id such as ``known_therapist`` also matches ``...[ORS]`` variants)."""

    clinics: tuple[str, ...] = ()
    batches: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass
class ReprocessResult:
    """One original batch's reprocess: its own batch (None when nothing changed)."""

    of_batch_id: int
    clinic_id: str
    source_name: str
    batch_id: int | None = None
    status: str = "unchanged"  # reprocessed | unchanged | skipped
    reason: str | None = None
    administrations: int = 0  # open administrations looked at
    loaded: int = 0  # administrations loaded (or already loaded: duplicates)
    requarantined: int = 0  # quarantined again, with other reasons than before
    unchanged: int = 0  # still failing for the same rules: left as they were
    rows_received: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    report: dict | None = field(default=None, repr=False, compare=False)

    def summary(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "report"}

    @property
    def accounted(self) -> bool:
        return self.rows_received == self.rows_loaded + self.rows_quarantined + self.rows_duplicate


def open_quarantine_sql(con: duckdb.DuckDBPyConnection) -> str:
    """SQL of the open quarantine rows (not resolved by a reprocess, of a batch that was not
    superseded), with every column of ``quarantine``; an older lake has no resolutions."""
    resolved = (
        "AND NOT EXISTS (SELECT 1 FROM quarantine_resolution r WHERE r.batch_id = q.batch_id "
        "AND r.source_ref IS NOT DISTINCT FROM q.source_ref "
        "AND r.instrument IS NOT DISTINCT FROM q.instrument)"
        if warehouse.has_table(con, RESOLUTION) else "")
    return ("SELECT q.* FROM quarantine q WHERE q.batch_id NOT IN "  # noqa: S608 - constant
            f"(SELECT batch_id FROM batch_supersession) {resolved}")


def scope_filter(scope: Scope, alias: str = "q") -> tuple[str, list]:
    """A WHERE fragment (starting with AND) and its parameters for ``scope``."""
    sql, params = "", []
    if scope.clinics:
        sql += f" AND {alias}.clinic_id IN (SELECT unnest(?))"
        params.append(list(scope.clinics))
    if scope.batches:
        sql += f" AND {alias}.batch_id IN (SELECT unnest(?))"
        params.append([int(b) for b in scope.batches])
    if scope.reasons:
        sql += (f" AND (list_contains(?, {alias}.rule) OR list_contains(?, "
                f"regexp_replace({alias}.rule, '\\[.*\\]$', '')))")
        params += [list(scope.reasons), list(scope.reasons)]
    return sql, params


def _open_rows(con: duckdb.DuckDBPyConnection, scope: Scope) -> pl.DataFrame:
    """Every open quarantine row of the administrations in scope (an administration is in
    scope when any of its rows is: all its rows come along)."""
    where, params = scope_filter(scope)
    base = open_quarantine_sql(con)
    return warehouse.query_frame(
        con,
        f"""
        WITH open_q AS ({base}),
        units AS (SELECT DISTINCT batch_id, source_ref, instrument FROM open_q q
                  WHERE TRUE {where})
        SELECT o.* FROM open_q o SEMI JOIN units u
          ON u.batch_id = o.batch_id AND u.source_ref IS NOT DISTINCT FROM o.source_ref
         AND u.instrument IS NOT DISTINCT FROM o.instrument
        ORDER BY o.batch_id, o.source_row, o.rule
        """,  # noqa: S608 - fragments are this module's own
        params)


def _rebuild(rows: pl.DataFrame) -> pl.DataFrame:
    """The canonical rows (text, as read) of the quarantined administrations in ``rows``,
    from their raw values; one row per answer of each administration."""
    out: list[dict] = []
    for (batch, ref, _instrument), unit in rows.group_by(_UNIT, maintain_order=True):
        raws = [json.loads(v) for v in unit["raw_values"]]
        issue = unit.filter(pl.col("rule") == "record_readable")["reason"].to_list()
        first_row = int(unit["source_row"].min())
        with_answers = next((r for r in raws if r.get("answers")), None)
        if with_answers is not None:
            base = {k: with_answers.get(k) for k in _RAW_TEXT}
            answers = [{**base, "item": a.get("item"), "score": a.get("score")}
                       for a in with_answers["answers"]]
        else:  # a one-row administration: every quarantine row holds the same row
            answers = [{k: raws[0].get(k) for k in _RAW_TEXT}]
        for a in answers:
            out.append({**{k: None if a[k] is None else str(a[k]) for k in _RAW_TEXT},
                        "source_row": first_row, "source_ref": ref,
                        "reader_issue": issue[0] if issue else None,
                        "_batch": int(batch)})
    schema = {**{k: pl.String for k in _RAW_TEXT}, "source_row": pl.Int64,
              "source_ref": pl.String, "reader_issue": pl.String, "_batch": pl.Int64}
    return pl.DataFrame(out, schema=schema, orient="row")


@dataclass
class _Prepared:
    """One original batch's open administrations, rebuilt, staged and validated."""

    of_batch: dict
    previous: dict[tuple, frozenset[str]]  # unit -> rules it failed before
    unique: pl.DataFrame
    failures: pl.DataFrame
    summary: list[dict]
    report: dict


def _batch_records(con: duckdb.DuckDBPyConnection, ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    frame = warehouse.query_frame(
        con, "SELECT * FROM batch WHERE batch_id IN (SELECT unnest(?))", [ids])
    return {int(r["batch_id"]): r for r in frame.iter_rows(named=True)}


def _prepare(rows: pl.DataFrame, records: dict[int, dict], contracts: dict[str, ClinicContract],
             instruments: dict[str, Instrument], as_of: dt.date, settings: Settings,
             results: list[ReprocessResult]) -> list[_Prepared]:
    """Rebuild and validate every original batch's open administrations (one GX run)."""
    todo: list[tuple[dict, dict, pl.DataFrame, ClinicContract]] = []
    offset = 0
    for (batch_id,), part in rows.group_by(["batch_id"], maintain_order=True):
        record = records[int(batch_id)]
        clinic = record["clinic_id"]
        contract = contracts.get(clinic)
        if contract is None:
            results.append(ReprocessResult(
                int(batch_id), clinic, record["source_name"], status="skipped",
                reason=f"clinic {clinic} has no contract any more: left quarantined"))
            continue
        previous = {(r["source_ref"], r["instrument"]): frozenset(r["rule"]) for r in
                    part.group_by(["source_ref", "instrument"]).agg(pl.col("rule"))
                    .iter_rows(named=True)}
        raw = _rebuild(part).drop("_batch")
        staged = stage_rows(raw, contract.date_format).with_columns(pl.col(ROW_ID) + offset)
        offset += staged.height
        todo.append((record, previous, add_contract_columns(staged, instruments), contract))
    if not todo:
        return []
    outcomes = validate_many([(u, c) for _, _, u, c in todo], instruments, as_of,
                             settings.rules_path)
    return [_Prepared(rec, prev, unique, o.failures, o.summary, o.result_json)
            for (rec, prev, unique, _), o in zip(todo, outcomes, strict=True)]


def reprocess(settings: Settings, scope: Scope | None = None, *, as_of: dt.date | None = None,
              flow_run_id: str | None = None,
              on_result: Callable[[ReprocessResult], None] | None = None,
              ) -> list[ReprocessResult]:
    """Validate the open quarantined administrations in ``scope`` again under the current
    contracts; one result per original batch looked at (see the module doc)."""
    scope = scope or Scope()
    as_of = as_of or dt.date.today()
    if not warehouse.lake_exists(settings):
        return []
    contracts = load_clinic_contracts(settings)
    instruments = load_instruments(settings)
    key = load_key(settings)
    with warehouse.reader(settings) as con:
        rows = _open_rows(con, scope)
        records = _batch_records(con, sorted({int(b) for b in rows["batch_id"]}))
    results: list[ReprocessResult] = []
    prepared = _prepare(rows, records, contracts, instruments, as_of, settings, results)
    if prepared:
        clinics = sorted({p.of_batch["clinic_id"] for p in prepared})
        with warehouse.writer(settings) as con:
            warehouse.ensure_tables(con, [RESOLUTION])
            ids = warehouse.allocate_batch_ids(con, len(prepared))

            def work(c: duckdb.DuckDBPyConnection) -> list[ReprocessResult]:
                check_key(c, key)  # raw values were pseudonymised under this key
                still_open = _open_rows(c, Scope(batches=tuple(
                    int(p.of_batch["batch_id"]) for p in prepared)))
                known = LoadedAnswers(c, [p.unique for p in prepared])
                writes = _Writes()
                resolutions: list[dict] = []
                done = [_plan(p, batch_id, still_open, known, writes, resolutions, flow_run_id)
                        for p, batch_id in zip(prepared, ids, strict=True)]
                if resolutions:
                    writes.insert(c)
                    warehouse.insert_frame(c, RESOLUTION, pl.DataFrame(
                        resolutions, schema=_RESOLUTION_SCHEMA, orient="row"))
                return done

            planned = warehouse.run_locked(
                con, clinics, work, what=f"reprocess {len(prepared)} batch(es)",
                message=("reprocess", {"batches": ids}), faults="reprocess_")
        for result in planned:
            if result.batch_id is not None:
                write_batch_report(settings.validation_dir, result.batch_id, result.clinic_id,
                                   result.source_name, result.report or {},
                                   result.summary())
            result.report = None
        results += planned
    results.sort(key=lambda r: r.of_batch_id)
    for result in results:
        if on_result:
            on_result(result)
    return results


_RESOLUTION_SCHEMA = {"batch_id": pl.Int64, "source_ref": pl.String, "instrument": pl.String,
                      "resolved_by_batch_id": pl.Int64, "outcome": pl.String,
                      "resolved_at": pl.Datetime("us", "UTC")}


def _plan(p: _Prepared, batch_id: int, still_open: pl.DataFrame, known: LoadedAnswers,
          writes: _Writes, resolutions: list[dict], flow_run_id: str | None) -> ReprocessResult:
    """One original batch's reprocess batch: rows and resolutions added to ``writes``."""
    record = p.of_batch
    of_batch, clinic = int(record["batch_id"]), record["clinic_id"]
    result = ReprocessResult(of_batch, clinic, record["source_name"])
    now = dt.datetime.now(dt.UTC)
    # Administrations another run resolved since they were read are left alone.
    mine = still_open.filter(pl.col("batch_id") == of_batch).select(UNIT_KEY).unique()
    unique = _only(p.unique, mine, UNIT_KEY)
    result.administrations = unique.select(UNIT_KEY).unique().height
    if unique.is_empty():
        return result
    failures = p.failures.join(unique.select(ROW_ID), on=ROW_ID, how="semi")
    failed_units = _only(unique, failures.select(ROW_ID).unique(), ROW_ID).select(
        UNIT_KEY).unique()
    set_aside = _only(unique, failed_units, UNIT_KEY)
    candidates = _without(unique, set_aside.select(ROW_ID))

    clash = known.clash(candidates, None)
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
    conflicted = _only(candidates, _only(candidates, conflicts.select(ROW_ID), ROW_ID)
                       .select(UNIT_KEY).unique(), UNIT_KEY)
    set_aside = pl.concat([set_aside, conflicted], how="diagonal_relaxed")
    candidates = _without(candidates, conflicted.select(ROW_ID))
    already = _only(candidates, same.select(ROW_ID), ROW_ID)
    to_load = _without(candidates, already.select(ROW_ID))
    failures = pl.concat([failures, conflicts.cast(failures.schema)])

    # Still failing for the same rules as before: left as it is (open, untouched).
    now_rules = {(r["source_ref"], r["instrument"]): frozenset(r["rule"]) for r in
                 failures.join(unique.select(ROW_ID, *UNIT_KEY), on=ROW_ID)
                 .group_by(UNIT_KEY).agg(pl.col("rule")).iter_rows(named=True)}
    same_as_before = [u for u, rules in now_rules.items() if p.previous.get(u) == rules]
    keep = pl.DataFrame(same_as_before, schema={"source_ref": pl.String,
                                                "instrument": pl.String}, orient="row")
    result.unchanged = keep.height
    set_aside = _without(set_aside, _only(set_aside, keep, UNIT_KEY).select(ROW_ID))
    failures = failures.join(set_aside.select(ROW_ID), on=ROW_ID, how="semi")
    changed = result.administrations - result.unchanged
    if changed == 0:
        return result

    result.batch_id = batch_id
    result.status = "reprocessed"
    result.requarantined = set_aside.select(UNIT_KEY).unique().height
    result.loaded = changed - result.requarantined
    result.rows_quarantined = set_aside.height
    result.rows_duplicate = already.height
    result.rows_loaded = to_load.height
    result.rows_received = set_aside.height + already.height + to_load.height
    result.reason = (f"re-validated {changed} quarantined administration(s) of batch "
                     f"{of_batch} after a contract change")
    if not result.accounted:  # a bug, not bad input: never commit rows that do not add up
        raise RuntimeError(f"row accounting does not hold for reprocess of {of_batch}: {result}")

    writes.frames["response_row"].append(to_response_rows(to_load, batch_id))
    writes.frames["reported_total_row"].append(to_reported_total_rows(to_load, batch_id))
    writes.frames["quarantine"].append(_quarantine_rows(failures, set_aside, batch_id, clinic, now))
    batch_row = {
        "batch_id": batch_id, "clinic_id": clinic, "source_name": record["source_name"],
        "stored_path": record["stored_path"], "content_sha256": record["content_sha256"],
        "size_bytes": record["size_bytes"], "format": record["format"], "received_at": now,
        "trigger": TRIGGER, "flow_run_id": flow_run_id,
    }
    # _record_batch reads a BatchResult's fields; ours has the same names
    _record_batch(writes, batch_row, _AsBatch(result), p.summary, now, None)
    known.loaded(to_load, batch_id, None)

    requeued = set_aside.select(UNIT_KEY).unique()
    loaded_units = _without(unique.select(ROW_ID, *UNIT_KEY),
                            _only(unique, pl.concat([keep, requeued]), UNIT_KEY)
                            .select(ROW_ID)).select(UNIT_KEY).unique()
    fresh = to_load.select(UNIT_KEY).unique()
    for ref, instrument in loaded_units.iter_rows():
        outcome = "loaded" if fresh.filter((pl.col("source_ref") == ref) & (
            pl.col("instrument") == instrument)).height else "duplicate"
        resolutions.append({"batch_id": of_batch, "source_ref": ref, "instrument": instrument,
                            "resolved_by_batch_id": batch_id, "outcome": outcome,
                            "resolved_at": now})
    for ref, instrument in requeued.iter_rows():
        resolutions.append({"batch_id": of_batch, "source_ref": ref, "instrument": instrument,
                            "resolved_by_batch_id": batch_id, "outcome": "requarantined",
                            "resolved_at": now})
    result.report = p.report
    return result


class _AsBatch:
    """A reprocess result seen as the batch outcome ``_record_batch`` writes."""

    def __init__(self, result: ReprocessResult) -> None:
        self.batch_id = result.batch_id
        self.status = "loaded"
        self.reason = result.reason
        self.rows_received = result.rows_received
        self.rows_loaded = result.rows_loaded
        self.rows_quarantined = result.rows_quarantined
        self.rows_duplicate = result.rows_duplicate
        self.rows_replaced = 0


def reprocess_batches(settings: Settings, clinics: list[str] | None = None,
                      batches: list[int] | None = None, reasons: list[str] | None = None,
                      *, flow_run_id: str | None = None) -> list[dict]:
    """:func:`reprocess` with plain parameters and results (what the flow's task runs)."""
    scope = Scope(tuple(clinics or ()), tuple(int(b) for b in batches or ()),
                  tuple(reasons or ()))
    return [r.summary() for r in reprocess(settings, scope, flow_run_id=flow_run_id)]
