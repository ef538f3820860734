"""What the quality team asks first: per clinic, the last file and how fresh it is, the
files that failed, what is quarantined and why, and how old the published marts are; and
the quarantine itself, by clinic, batch or reason (``tandem status``,
``tandem quarantine list|show``). Read-only, Prefect-free.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tandem.core import published, warehouse
from tandem.core.contracts import load_clinic_contracts
from tandem.core.settings import Settings
from tandem.pipeline.reprocess import RESOLUTION, Scope, open_quarantine_sql, scope_filter


def _rows(con, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _base_rule(rule: str) -> str:
    return rule.split("[", 1)[0]


def clinic_status(settings: Settings, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per clinic (every clinic with a contract or a batch): last file, its age, failed
    files (whose name has not loaded since), open quarantine by reason; and the marts."""
    now = now or dt.datetime.now(dt.UTC)
    clinics: dict[str, dict[str, Any]] = {
        c: _empty(c) for c in sorted(load_clinic_contracts(settings))}
    snap = published.current(settings)
    marts = None
    if snap is not None:
        marts = {"version": snap.version, "published_at": snap.published_at.isoformat(),
                 "age_hours": round((now - snap.published_at).total_seconds() / 3600, 2)}
    if not warehouse.lake_exists(settings):
        return {"clinics": list(clinics.values()), "marts": marts, "checked_at": now.isoformat()}
    with warehouse.reader(settings) as con:
        for r in _rows(con, """
                SELECT clinic_id, source_name, status, received_at, batch_id FROM (
                  SELECT *, row_number() OVER (PARTITION BY clinic_id
                                               ORDER BY received_at DESC, batch_id DESC) n
                  FROM batch WHERE clinic_id IS NOT NULL AND trigger <> 'reprocess') WHERE n = 1
                """):
            c = clinics.setdefault(r["clinic_id"], _empty(r["clinic_id"]))
            at = r["received_at"]
            c["last_file"] = {"source_name": r["source_name"], "status": r["status"],
                              "batch_id": r["batch_id"], "received_at": at.isoformat()}
            c["freshness_days"] = round((now - at).total_seconds() / 86400, 2)
        for r in _rows(con, """
                SELECT f.clinic_id, f.batch_id, f.source_name, f.reason FROM batch f
                WHERE f.status = 'failed' AND NOT EXISTS (
                  SELECT 1 FROM batch l WHERE l.clinic_id IS NOT DISTINCT FROM f.clinic_id
                  AND l.source_name = f.source_name AND l.batch_id > f.batch_id
                  AND l.status <> 'failed')
                ORDER BY f.batch_id
                """):
            key = r["clinic_id"] or "_unknown"
            c = clinics.setdefault(key, _empty(key))
            c["failed_files"].append({"batch_id": r["batch_id"], "source_name": r["source_name"],
                                      "reason": r["reason"]})
        for r in _rows(con, f"""
                SELECT clinic_id, rule, count(DISTINCT (batch_id, source_ref, instrument))
                       AS administrations, count(*) AS rows
                FROM ({open_quarantine_sql(con)}) GROUP BY 1, 2 ORDER BY 1, 2
                """):  # noqa: S608 - the module's own SQL
            key = r["clinic_id"] or "_unknown"
            c = clinics.setdefault(key, _empty(key))
            by = c["quarantine"].setdefault(_base_rule(r["rule"]), 0)
            c["quarantine"][_base_rule(r["rule"])] = by + int(r["administrations"])
    if marts is not None:
        lag = published.marts_lag(settings)
        marts["last_batch_id"] = lag.in_marts
        marts["behind"] = lag.behind
        marts["batches_missing"] = lag.missing
    return {"clinics": list(clinics.values()), "marts": marts, "checked_at": now.isoformat()}


def _empty(clinic: str) -> dict[str, Any]:
    return {"clinic_id": clinic, "last_file": None, "freshness_days": None,
            "failed_files": [], "quarantine": {}}


def quarantine_groups(settings: Settings, scope: Scope | None = None,
                      include_resolved: bool = False) -> list[dict[str, Any]]:
    """The quarantine per batch and rule: administrations and rows set aside, an example
    reason, and (with ``include_resolved``) how many a reprocess has resolved."""
    scope = scope or Scope()
    if not warehouse.lake_exists(settings):
        return []
    with warehouse.reader(settings) as con:
        where, params = scope_filter(scope)
        source = "quarantine" if include_resolved else f"({open_quarantine_sql(con)})"
        resolved = ("(SELECT count(*) FROM quarantine_resolution r WHERE r.batch_id = q.batch_id"
                    " AND r.source_ref IS NOT DISTINCT FROM q.source_ref"
                    " AND r.instrument IS NOT DISTINCT FROM q.instrument) > 0"
                    if warehouse.has_table(con, RESOLUTION) else "false")
        rows = _rows(con, f"""
            SELECT q.batch_id, q.clinic_id, b.source_name, b.trigger, q.rule,
                   count(DISTINCT (q.source_ref, q.instrument)) AS administrations,
                   count(*) AS rows, min(q.reason) AS example,
                   count(DISTINCT CASE WHEN {resolved} THEN (q.source_ref, q.instrument) END)
                     AS resolved
            FROM {source} q LEFT JOIN batch b ON b.batch_id = q.batch_id
            WHERE TRUE {where}
            GROUP BY ALL ORDER BY q.batch_id, q.rule
            """, params)  # noqa: S608 - the module's own SQL
    for r in rows:
        r["reason"] = _base_rule(r["rule"])
    return rows


def quarantine_rows(settings: Settings, batch_id: int,
                    include_resolved: bool = True) -> dict[str, Any] | None:
    """One batch's quarantine rows (pseudonymised raw values), with what became of each
    administration; None when there is no such batch."""
    if not warehouse.lake_exists(settings):
        return None
    with warehouse.reader(settings) as con:
        batch = _rows(con, "SELECT batch_id, clinic_id, source_name, status, trigger, "
                      "received_at, rows_received, rows_loaded, rows_quarantined, "
                      "rows_duplicate FROM batch WHERE batch_id = ?", [batch_id])
        if not batch:
            return None
        has = warehouse.has_table(con, RESOLUTION)
        fate = ("(SELECT any_value(outcome || ' by batch ' || resolved_by_batch_id) "
                "FROM quarantine_resolution r WHERE r.batch_id = q.batch_id "
                "AND r.source_ref IS NOT DISTINCT FROM q.source_ref "
                "AND r.instrument IS NOT DISTINCT FROM q.instrument)" if has else "NULL")
        rows = _rows(con, f"""
            SELECT q.source_row, q.source_ref, q.instrument, q.rule, q.column_name, q.reason,
                   q.raw_values, {fate} AS resolution
            FROM quarantine q WHERE q.batch_id = ? ORDER BY q.source_row, q.rule
            """, [batch_id])  # noqa: S608 - the module's own SQL
    if not include_resolved:
        rows = [r for r in rows if r["resolution"] is None]
    for r in rows:
        r["raw_values"] = json.loads(r["raw_values"])
    info = batch[0]
    info["received_at"] = info["received_at"].isoformat()
    return {"batch": info, "rows": rows}
