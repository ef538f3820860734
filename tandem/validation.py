"""Great Expectations validation of staged rows against a clinic's data contract.

The suite is built from ``data_contracts/rules.yaml`` plus the clinic contract and the
instrument definitions, so a rule lives in one place. GX runs on a pandas frame (its SQL
path returns no rows on DuckDB: GX issues #10738, #11579), reached from Polars via Arrow.
Importing GX and making a context cost seconds, so one context serves the whole process.
Each failing row comes back with its rule and a readable reason for the quarantine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import string
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from tandem.contracts import ClinicContract, Instrument
from transforms.staging import ROW_ID


@dataclass(frozen=True)
class RuleSpec:
    """One expectation of the suite, with what a person needs to read its failures."""

    rule: str
    expectation_type: str
    kwargs: dict[str, Any]
    reason: str
    column: str | None
    instrument: str | None = None
    only_where_present: str | None = None
    # The rule name a failing row is filed under, filled from the row (e.g. "...[{instrument}]").
    label: str | None = None


@dataclass
class ValidationOutcome:
    success: bool
    # One row per (row_id, rule): row_id, rule, column_name, reason
    failures: pl.DataFrame
    # One dict per expectation: rule, expectation_type, column_name, success, counts
    summary: list[dict[str, Any]]
    result_json: dict[str, Any] = field(repr=False, default_factory=dict)


@lru_cache(maxsize=4)
def load_rules(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)["rules"]


def build_rule_specs(
    rules: list[dict[str, Any]],
    contract: ClinicContract,
    instruments: dict[str, Instrument],
    as_of: dt.date,
) -> list[RuleSpec]:
    """Expand the rule templates for one clinic contract (and each of its instruments)."""
    context: dict[str, Any] = {
        "roster": sorted(contract.therapists),
        "started_on": contract.started_on,
        "as_of": as_of,
        "date_format": contract.date_format,
        "contract_clinic_id": contract.clinic_id,
        "clinic_ids": [contract.clinic_id],
        "contract_instruments": sorted(contract.instruments),
        "contract_instruments_text": ", ".join(sorted(contract.instruments)),
    }
    specs: list[RuleSpec] = []
    for rule in rules:
        columns = rule.get("for_each_column") or [rule.get("column")]
        if rule.get("for_each_instrument"):
            targets = [instruments[c] for c in sorted(contract.instruments) if c in instruments]
        else:
            targets = [None]
        for inst in targets:
            ctx = dict(context)
            if inst is not None:
                ctx.update(
                    instrument=inst.code,
                    n_items=inst.n_items,
                    item_min=_num(inst.item_range.min),
                    item_max=_num(inst.item_range.max),
                    total_min=_num(inst.scoring.total_range.min),
                    total_max=_num(inst.scoring.total_range.max),
                )
            for column in columns:
                kwargs: dict[str, Any] = {}
                for key in ("value_set", "min_value", "max_value", "column_list", "column_A",
                            "column_B", "or_equal"):
                    if key in rule:
                        kwargs[key] = _fill(rule[key], ctx)
                if column is not None:
                    kwargs["column"] = column
                for key in ("ignore_row_if",):
                    if key in rule:
                        kwargs[key] = rule[key]
                where = rule.get("only_where_present")
                conditions = []
                if inst is not None:
                    conditions.append(f'instrument=="{inst.code}"')
                if rule.get("where"):
                    conditions.append(f"({rule['where']})")
                if where:
                    conditions.append(f"{where}.notna()")
                if conditions:
                    kwargs["row_condition"] = " and ".join(conditions)
                    kwargs["condition_parser"] = "pandas"
                reason = rule["reason"]
                if inst is not None:
                    reason = _partial_format(reason, ctx)
                n_same = sum(1 for s in specs if _base_rule(s.rule) == rule["id"])
                specs.append(
                    RuleSpec(
                        rule=rule["id"] + (f"[{inst.code}]" if inst is not None else "")
                        + (f"#{n_same + 1}" if n_same else ""),
                        expectation_type=rule["expectation"],
                        kwargs=kwargs,
                        reason=_partial_format(reason, {**ctx, "column": column}),
                        column=rule.get("report_column") or column,
                        instrument=inst.code if inst is not None else None,
                        only_where_present=where,
                        label=_partial_format(rule["label"], ctx) if rule.get("label") else None,
                    )
                )
    return specs


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _fill(value: Any, ctx: dict[str, Any]) -> Any:
    """Replace a whole-string placeholder like "{roster}" by the context's typed value."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ctx[value[1:-1]]
    return value


class _SafeDict(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _partial_format(template: str, values: dict[str, Any]) -> str:
    return template.format_map(_SafeDict({k: v for k, v in values.items() if v is not None}))


class ContractValidator:
    """One GX context per process; one suite per distinct set of expectations (with the
    contract values kept in columns, one for every clinic), built on first use."""

    def __init__(self) -> None:
        import great_expectations as gx  # slow import: only when validation is needed

        self._gx = gx
        self._lock = threading.Lock()
        self.context = gx.get_context(mode="ephemeral")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = self.context.data_sources.add_pandas("tandem_batches")
        self._asset = source.add_dataframe_asset("staged_rows")
        self._batch_definition = self._asset.add_batch_definition_whole_dataframe("batch")
        self._definitions: dict[str, tuple[Any, list[RuleSpec]]] = {}

    def _definition(self, specs: list[RuleSpec]) -> str:
        """The key of the GX validation definition for these expectations (made once)."""
        gx = self._gx
        key = hashlib.sha256(
            json.dumps([(s.rule, s.expectation_type, s.kwargs) for s in specs], default=str,
                       sort_keys=True).encode()
        ).hexdigest()[:16]
        if key not in self._definitions:
            suite = gx.ExpectationSuite(name=f"contract-{key}")
            for spec in specs:
                cls = _expectation_class(gx, spec.expectation_type)
                kwargs = {k: _gx_value(v) for k, v in spec.kwargs.items()}
                suite.add_expectation(cls(**kwargs, meta={"rule": spec.rule}))
            suite = self.context.suites.add(suite)
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=f"validate-{key}", data=self._batch_definition,
                                        suite=suite)
            )
            self._definitions[key] = (vd, specs)
        return key

    def validate(
        self,
        staged: pl.DataFrame,
        contract: ClinicContract,
        instruments: dict[str, Instrument],
        as_of: dt.date,
        rules_path: Path,
    ) -> ValidationOutcome:
        """Validate one file's staged rows (see :meth:`validate_many`)."""
        return self.validate_many([(staged, contract)], instruments, as_of, rules_path)[0]

    def validate_many(
        self,
        batches: list[tuple[pl.DataFrame, ClinicContract]],
        instruments: dict[str, Instrument],
        as_of: dt.date,
        rules_path: Path,
    ) -> list[ValidationOutcome]:
        """Validate many files' staged rows in as few GX runs as the suites allow.

        Each frame's ``row_id`` must be unique across ``batches`` (the caller numbers rows
        globally). Files whose suites are equal (the rules keep contract values out of the
        expectations' arguments, so usually all of them) are concatenated and validated in
        one GX run; the result is split back into one outcome per file, with per-file
        counts, failures and reasons, as if each file had been validated alone.
        """
        rules = load_rules(rules_path)
        groups: dict[str, list[int]] = {}
        plans: list[tuple[Any, list[RuleSpec]]] = []
        with self._lock:
            for i, (_, contract) in enumerate(batches):
                specs = build_rule_specs(rules, contract, instruments, as_of)
                key = self._definition(specs)
                plans.append((key, specs))
                groups.setdefault(key, []).append(i)
        outcomes: list[ValidationOutcome | None] = [None] * len(batches)
        for key, members in groups.items():
            vd, suite_specs = self._definitions[key]
            frames = [add_contract_values(batches[i][0], batches[i][1], as_of, file_key=i)
                      for i in members]
            with self._lock:
                cols = _suite_columns(suite_specs)
                frame = _to_pandas(_slim(pl.concat([f.select(cols) for f in frames],
                                                   how="vertical_relaxed"), suite_specs))
                result = vd.run(
                    batch_parameters={"dataframe": frame},
                    result_format={"result_format": "COMPLETE",
                                   "unexpected_index_column_names": [ROW_ID]},
                )
                del frame
            hits: list[tuple[int, str]] = []
            for res in result.results:
                rule = res.expectation_config.meta["rule"]
                error = _raised(res.exception_info)
                if error:
                    raise RuntimeError(f"data contract rule {rule} could not run: {error}")
                hits.extend((int(r[ROW_ID]), rule)
                            for r in res.result.get("unexpected_index_list") or [])
                _compact_result(res.result)  # before serialising: a list per failing row
            report = _compact(result.to_json_dict())
            hit_frame = pl.DataFrame(hits, schema={ROW_ID: pl.Int64, "_rule": pl.String},
                                     orient="row")
            for i, staged in zip(members, frames, strict=True):
                mine = hit_frame.join(staged.select(ROW_ID), on=ROW_ID, how="semi")
                outcomes[i] = _outcome(mine, plans[i][1], batches[i][0], report)
        return [o for o in outcomes if o is not None]


def _suite_columns(specs: list[RuleSpec]) -> list[str]:
    """The columns the suite reads, and the row id: all that GX needs to see."""
    cols = [ROW_ID]
    for spec in specs:
        kw = spec.kwargs
        for c in [kw.get("column"), kw.get("column_A"), kw.get("column_B"),
                  *(kw.get("column_list") or [])]:
            if c is not None and c not in cols:
                cols.append(c)
    return cols


_NULL_CHECKS = {"expect_column_values_to_be_null", "expect_column_values_to_not_be_null"}


def _slim(frame: pl.DataFrame, specs: list[RuleSpec]) -> pl.DataFrame:
    """Text columns as GX needs them: a text column the suite only null-checks becomes a
    float marker (1.0 or null), one it also only compares for equality in a compound key
    becomes its category code (null stays null). pandas then holds 8 bytes a row instead of
    a Python string, and GX's checks run on floats. Values never reach the report (it keeps
    counts only), and reasons are rendered from the staged rows."""
    uses: dict[str, set[str]] = {}
    for spec in specs:
        kw = spec.kwargs
        if spec.expectation_type in _NULL_CHECKS and "column" in kw:
            uses.setdefault(kw["column"], set()).add("null")
            continue
        if spec.expectation_type == "expect_compound_columns_to_be_unique":
            for c in kw.get("column_list") or []:
                uses.setdefault(c, set()).add("key")
            continue
        for c in (kw.get("column"), kw.get("column_A"), kw.get("column_B")):
            if c is not None:
                uses.setdefault(c, set()).add("other")
    casts = []
    for name, dtype in frame.schema.items():
        how = uses.get(name, set())
        if dtype != pl.String or not how or "other" in how:
            continue
        if how == {"null"}:
            casts.append(pl.when(pl.col(name).is_null()).then(pl.lit(None, pl.Float64))
                         .otherwise(pl.lit(1.0)).alias(name))
        else:
            casts.append(pl.col(name).cast(pl.Categorical).to_physical().cast(pl.Float64))
    return frame.with_columns(casts) if casts else frame


def add_contract_values(staged: pl.DataFrame, contract: ClinicContract, as_of: dt.date,
                        file_key: int = 0) -> pl.DataFrame:
    """The contract's values as columns, so one suite serves every clinic and file."""
    return staged.with_columns(
        file_key=pl.lit(file_key, pl.Int64),
        contract_clinic_id=pl.lit(contract.clinic_id, pl.String),
        clinic_matches_contract=pl.col("clinic_id") == contract.clinic_id,
        on_roster=pl.col("therapist_id").is_in(sorted(contract.therapists)),
        instrument_in_contract=pl.col("instrument").is_in(sorted(contract.instruments)),
        started_on=pl.lit(contract.started_on, pl.Date),
        as_of=pl.lit(as_of, pl.Date),
    )


def _outcome(hits: pl.DataFrame, specs: list[RuleSpec], staged: pl.DataFrame,
             report: dict[str, Any]) -> ValidationOutcome:
    """One file's outcome from its failing (row id, rule) pairs of a shared GX run."""
    by_rule = {s.rule: s for s in specs}
    counts = dict(hits.group_by("_rule").len().iter_rows()) if hits.height else {}
    n = staged.height
    summary = []
    for spec in specs:
        bad = counts.get(spec.rule, 0)
        summary.append({
            "rule": _base_rule(spec.rule),
            "expectation_type": spec.expectation_type,
            "column_name": spec.column or spec.kwargs.get("column_A"),
            "success": bad == 0,
            "element_count": n,
            "unexpected_count": bad,
        })
    spec_rows = pl.DataFrame(
        [(s.rule, s.label or _base_rule(s.rule), s.column or s.kwargs.get("column_A"), s.reason)
         for s in specs],
        schema={"_rule": pl.String, "rule": pl.String, "column_name": pl.String,
                "template": pl.String}, orient="row")
    failed = hits.join(spec_rows, on="_rule", how="left").select(
        ROW_ID, "rule", "column_name", "template")
    return ValidationOutcome(
        success=all(s["success"] for s in summary),
        failures=_render_reasons(failed, staged),
        summary=summary,
        result_json=_file_report(report, {s.rule: counts.get(s.rule, 0) for s in by_rule.values()},
                                 n),
    )


def _file_report(report: dict[str, Any], bad: dict[str, int], n: int) -> dict[str, Any]:
    """The shared GX result with one file's counts: what that file's own run would say."""
    out = {k: v for k, v in report.items() if k != "results"}
    results = []
    for res in report.get("results", []):
        r = dict(res)
        rule = ((r.get("expectation_config") or {}).get("meta") or {}).get("rule")
        count = bad.get(rule, 0)
        sub = {k: v for k, v in (r.get("result") or {}).items()
               if k not in ("missing_count", "missing_percent", "unexpected_percent_total",
                            "unexpected_percent_nonmissing")}
        sub.update(element_count=n, unexpected_count=count,
                   unexpected_percent=(100.0 * count / n) if n else None)
        r["result"], r["success"] = sub, count == 0
        results.append(r)
    out["results"] = results
    ok = sum(1 for r in results if r["success"])
    out["success"] = ok == len(results)
    stats = dict(out.get("statistics") or {})
    stats.update(evaluated_expectations=len(results), successful_expectations=ok,
                 unsuccessful_expectations=len(results) - ok,
                 success_percent=(100.0 * ok / len(results)) if results else None)
    out["statistics"] = stats
    return out


def _to_pandas(staged: pl.DataFrame) -> Any:
    """Hand the frame to GX in the dtypes its pandas checks vectorise (int64, float64 and
    datetime64[ns]); others (int16, datetime64[ms]) fall back to a Python call per row."""
    casts = []
    for name, dtype in staged.schema.items():
        if dtype.is_integer():
            casts.append(pl.col(name).cast(pl.Float64 if staged[name].null_count() else pl.Int64))
        elif dtype == pl.Date:
            casts.append(pl.col(name).cast(pl.Datetime("ns")))
    return staged.with_columns(casts).to_pandas()


def _base_rule(rule: str) -> str:
    """A rule's id without the ``#2`` that tells two expectations of one rule apart."""
    return rule.split("#", 1)[0]


def _shown(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _render_reasons(failed: pl.DataFrame, staged: pl.DataFrame) -> pl.DataFrame:
    """Fill each failure's reason (and rule label) with the failing row's values."""
    if failed.is_empty():
        return failed.drop("template").with_columns(reason=pl.lit(None, pl.String))
    # Only the columns the templates name: a file whose every row fails renders millions.
    named = {f for t in (*failed["template"].unique(), *failed["rule"].unique())
             for _, f, _, _ in string.Formatter().parse(t or "") if f}
    wanted = [ROW_ID, *(c for c in staged.columns
                        if c in named and c not in (ROW_ID, "client_key"))]
    rows = failed.join(staged.select(wanted), on=ROW_ID, how="left")
    reasons, rules = [], []
    for rec in rows.iter_rows(named=True):  # failures only: few rows
        values = {k: _shown(v) for k, v in rec.items()}
        reasons.append(_partial_format(rec["template"], values))
        rules.append(_partial_format(rec["rule"], values))
    return failed.drop("template").with_columns(
        reason=pl.Series(reasons, dtype=pl.String), rule=pl.Series(rules, dtype=pl.String))


_ROW_LISTS = ("unexpected_list", "unexpected_index_list", "partial_unexpected_list",
              "partial_unexpected_index_list", "partial_unexpected_counts",
              "unexpected_index_query")


def _compact_result(r: dict[str, Any] | None) -> None:
    """Drop one expectation result's per-row lists (a file whose every row fails would
    otherwise serialise millions of entries into its report)."""
    for key in _ROW_LISTS:
        (r or {}).pop(key, None)


def _compact(result: dict[str, Any]) -> dict[str, Any]:
    """Keep the report small: row numbers of failures are in the quarantine table already."""
    for res in result.get("results", []):
        _compact_result(res.get("result"))
    return result


def _gx_value(value: Any) -> Any:
    """Dates as pandas Timestamps: GX compares them with the datetime64 columns."""
    import pandas as pd

    if isinstance(value, dt.date):
        return pd.Timestamp(value)
    return value


def _raised(info: dict[str, Any] | None) -> str | None:
    """GX reports exceptions flat or keyed by metric; either way, say what failed."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for sub in info.values():
        if isinstance(sub, dict) and sub.get("raised_exception"):
            return sub.get("exception_message") or "unknown error"
    return None


def _expectation_class(gx: Any, expectation_type: str) -> type:
    name = "".join(part.capitalize() for part in expectation_type.split("_"))
    try:
        return getattr(gx.expectations, name)
    except AttributeError as exc:
        raise ValueError(f"unknown Great Expectations expectation {expectation_type!r}") from exc


_VALIDATOR: ContractValidator | None = None
_VALIDATOR_LOCK = threading.Lock()


def get_validator() -> ContractValidator:
    """The process-wide validator (GX import and context are built once)."""
    global _VALIDATOR
    with _VALIDATOR_LOCK:
        if _VALIDATOR is None:
            _VALIDATOR = ContractValidator()
        return _VALIDATOR


def warm_up_validator() -> None:
    """Build the validator in a background thread, if nobody has yet.

    Importing GX and making its context takes seconds of mostly Python and file reads;
    the ingest starts this before reading its first files, whose Polars work runs
    outside the GIL, so the two overlap on a multi-core machine. An error here is left
    for :func:`get_validator` to raise in the caller's thread."""
    if _VALIDATOR is not None:
        return

    def build() -> None:
        with contextlib.suppress(Exception):
            get_validator()

    threading.Thread(target=build, name="gx-warm-up", daemon=True).start()


# --- The quality team's report: one HTML page per batch, and an index of them ---------

_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;font-size:14px}th{background:#f3f3f3}.ok{color:#17663a}.bad{color:#a01c1c}"
)


def _page(title: str, body: str) -> str:
    from html import escape

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def write_batch_report(directory: Path, batch_id: int, clinic_id: str, source_name: str,
                       result_json: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Keep a batch's GX result as JSON and as a readable HTML page (Data Docs' role).

    GX's own Data Docs need a file-backed context and re-render every page on each build;
    a page per batch written once, from the kept result, stays fast on a back-fill of
    thousands of files and never holds client ids (the result has no row values).
    """
    from html import escape

    directory.mkdir(parents=True, exist_ok=True)
    stem = f"batch-{batch_id:08d}"
    (directory / f"{stem}.json").write_text(
        json.dumps({"batch": summary, "validation": result_json}, default=str, indent=1),
        encoding="utf-8")
    rows = []
    for res in result_json.get("results", []):
        cfg = res.get("expectation_config") or {}
        r = res.get("result") or {}
        kw = {k: v for k, v in (cfg.get("kwargs") or {}).items()
              if k not in ("batch_id", "condition_parser")}
        cls = "ok" if res.get("success") else "bad"
        rows.append(
            f"<tr><td>{escape(str((cfg.get('meta') or {}).get('rule', '')))}</td>"
            f"<td>{escape(str(cfg.get('type', '')))}</td>"
            f"<td><code>{escape(json.dumps(kw, default=str)[:300])}</code></td>"
            f"<td class='{cls}'>{'passed' if res.get('success') else 'failed'}</td>"
            f"<td>{r.get('element_count', '')}</td><td>{r.get('unexpected_count', '')}</td></tr>")
    facts = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                    for k, v in summary.items())
    body = (f"<p><a href='index.html'>all batches</a></p><h1>Batch {batch_id}: "
            f"{escape(source_name)}</h1><p>clinic {escape(clinic_id)}</p><table>{facts}</table>"
            "<h2>Data-contract rules (Great Expectations)</h2><table><tr><th>rule</th>"
            "<th>expectation</th><th>arguments</th><th>outcome</th><th>rows checked</th>"
            "<th>rows failing</th></tr>" + "".join(rows) + "</table>"
            "<p>Failing rows, with their reasons, are in the <code>quarantine</code> table "
            "(batch_id = " + str(batch_id) + ").</p>")
    path = directory / f"{stem}.html"
    path.write_text(_page(f"Batch {batch_id}", body), encoding="utf-8")
    return path


def build_report_index(directory: Path) -> Path:
    """``index.html`` over every kept batch report (newest first): the page to link to."""
    from html import escape

    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in sorted(directory.glob("batch-*.json"), reverse=True):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        b = doc.get("batch") or {}
        ok = (doc.get("validation") or {}).get("success")
        rows.append(
            f"<tr><td><a href='{path.stem}.html'>{b.get('batch_id', '')}</a></td>"
            f"<td>{escape(str(b.get('clinic_id', '')))}</td>"
            f"<td>{escape(str(b.get('source_name', '')))}</td>"
            f"<td class='{'ok' if ok else 'bad'}'>"
            f"{'all rules passed' if ok else 'rows failed'}</td>"
            f"<td>{b.get('rows_received', '')}</td><td>{b.get('rows_loaded', '')}</td>"
            f"<td>{b.get('rows_quarantined', '')}</td><td>{b.get('rows_duplicate', '')}</td></tr>")
    body = ("<h1>Tandem data-contract validation</h1><table><tr><th>batch</th><th>clinic</th>"
            "<th>file</th><th>outcome</th><th>received</th><th>loaded</th><th>quarantined</th>"
            "<th>duplicates</th></tr>" + "".join(rows) + "</table>")
    index = directory / "index.html"
    tmp = index.with_suffix(".html.tmp")
    tmp.write_text(_page("Tandem validation", body), encoding="utf-8")
    tmp.replace(index)
    return index


def validation_report_path(settings: Any = None) -> Path:
    """The report's entry page (built if missing): what the dashboard links to."""
    from tandem.settings import get_settings

    settings = settings or get_settings()
    index = settings.validation_dir / "index.html"
    if not index.exists():
        build_report_index(settings.validation_dir)
    return index
