"""The data-contract rules compiled for one clinic: ``data_contracts/rules.yaml`` expanded
with the clinic contract and the instrument definitions, so a rule lives in one place.

Contract values (roster, instruments, start date) go into columns of the staged rows
(:func:`add_contract_values`) rather than into the expectations' arguments, so one suite
serves every clinic and files of many clinics validate in one run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from tandem.core.contracts import ClinicContract, Instrument


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
                    reason = partial_format(reason, ctx)
                n_same = sum(1 for s in specs if base_rule(s.rule) == rule["id"])
                specs.append(
                    RuleSpec(
                        rule=rule["id"] + (f"[{inst.code}]" if inst is not None else "")
                        + (f"#{n_same + 1}" if n_same else ""),
                        expectation_type=rule["expectation"],
                        kwargs=kwargs,
                        reason=partial_format(reason, {**ctx, "column": column}),
                        column=rule.get("report_column") or column,
                        instrument=inst.code if inst is not None else None,
                        only_where_present=where,
                        label=partial_format(rule["label"], ctx) if rule.get("label") else None,
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


def partial_format(template: str, values: dict[str, Any]) -> str:
    return template.format_map(_SafeDict({k: v for k, v in values.items() if v is not None}))


def suite_key(specs: list[RuleSpec]) -> str:
    """Which suite these expectations are (files with equal keys share a GX run)."""
    return hashlib.sha256(
        json.dumps([(s.rule, s.expectation_type, s.kwargs) for s in specs], default=str,
                   sort_keys=True).encode()
    ).hexdigest()[:16]


def base_rule(rule: str) -> str:
    """A rule's id without the ``#2`` that tells two expectations of one rule apart."""
    return rule.split("#", 1)[0]


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
