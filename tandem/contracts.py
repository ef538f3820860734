"""Instruments and clinic source contracts, loaded from YAML in ``data_contracts/``.

Contracts are data: adding a questionnaire or a clinic means adding a YAML file.
These models validate that data once, so every layer reads the same definitions.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.settings import Settings, get_settings


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Item(_Model):
    number: int
    name: str | None = None
    label: str | None = None
    loinc: str | None = None


class Range(_Model):
    min: float
    max: float
    decimals: int | None = None


class Subscale(_Model):
    items: list[int]
    range: Range


class TopScore(_Model):
    all_items_equal: float


class Scoring(_Model):
    method: Literal["sum", "mean"]
    total_range: Range
    # How many items may be missing before the administration has no score; when some
    # are missing but no more than this, the total is prorated (mean of answered x items).
    max_missing_items: int = 0
    subscales: dict[str, Subscale] = Field(default_factory=dict)
    top_score: TopScore | None = None


class Caseness(_Model):
    at_or_above: float


class ReliableChange(_Model):
    """A published threshold, or the SD and reliability it is computed from (Jacobson & Truax)."""

    threshold: float | None = None
    sd_pre: float | None = None
    reliability: float | None = None

    @model_validator(mode="after")
    def _one_way(self) -> ReliableChange:
        if self.threshold is None and (self.sd_pre is None or self.reliability is None):
            raise ValueError("reliable_change needs a threshold, or both sd_pre and reliability")
        return self


class Norm(_Model):
    mean: float
    sd: float


class Norms(_Model):
    functional: Norm | None = None
    dysfunctional: Norm | None = None


class SeverityBand(_Model):
    label: str
    min: float
    max: float


class AllianceFlags(_Model):
    low_total_below: float
    flag_any_drop: bool = True


class Instrument(_Model):
    code: str
    name: str
    kind: Literal["outcome", "alliance", "practice"]
    direction: Literal["higher_is_better", "higher_is_worse"]
    items: list[Item]
    item_range: Range
    scoring: Scoring
    answer_codes: dict[str, float] = Field(default_factory=dict)
    loinc: dict[str, str] = Field(default_factory=dict)
    caseness: Caseness | None = None
    clinical_cutoff: dict[str, float | str] | None = None
    severity_bands: list[SeverityBand] = Field(default_factory=list)
    reliable_change: ReliableChange | None = None
    norms: Norms | None = None
    alliance_flags: AllianceFlags | None = None
    sources: list[str] = Field(default_factory=list)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher_is_better"

    def cutoff(self, population: str | None = None) -> float | None:
        """The clinical cutoff for a population (default as the definition says)."""
        if not self.clinical_cutoff:
            return None
        default = self.clinical_cutoff.get("default")
        if population is None and isinstance(default, int | float):
            return float(default)
        value = self.clinical_cutoff.get(population or str(default))
        return float(value) if isinstance(value, int | float) else None


class ClinicContract(_Model):
    """How one clinic sends its data: format, mapping, dates, encoding, roster."""

    clinic_id: str
    name: str
    format: Literal["canonical_csv", "redcap_csv", "fhir_ndjson", "excel"]
    encoding: str = "utf-8"
    date_format: str = "%Y-%m-%d"
    started_on: dt.date
    timezone: str = "UTC"
    instruments: list[str]
    therapists: list[str]
    # Format-specific mapping (column names, REDCap fields, FHIR linkIds, sheet layout).
    mapping: dict = Field(default_factory=dict)
    # Per-clinic ingest token for the HTTP batch endpoint is configured outside the repo.


def _load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _contract_dirs(settings: Settings) -> list[Path]:
    return [settings.contracts_dir, settings.local_contracts_dir]


@lru_cache(maxsize=8)
def _instruments(contracts_dir: Path) -> dict[str, Instrument]:
    out: dict[str, Instrument] = {}
    for path in sorted((contracts_dir / "instruments").glob("*.yaml")):
        inst = Instrument.model_validate(_load_yaml(path))
        if inst.code != path.stem:
            raise ValueError(f"{path}: code {inst.code!r} does not match the file name")
        out[inst.code] = inst
    return out


def load_instruments(settings: Settings | None = None) -> dict[str, Instrument]:
    """Every instrument defined in ``data_contracts/instruments/``, by code."""
    settings = settings or get_settings()
    return dict(_instruments(settings.contracts_dir))


def load_clinic_contracts(settings: Settings | None = None) -> dict[str, ClinicContract]:
    """Every clinic contract, repo contracts first, site contracts (TANDEM_HOME) overriding."""
    settings = settings or get_settings()
    out: dict[str, ClinicContract] = {}
    for d in _contract_dirs(settings):
        for path in sorted((d / "clinics").glob("*.yaml")):
            contract = ClinicContract.model_validate(_load_yaml(path))
            out[contract.clinic_id] = contract
    return out


def write_clinic_contract(contract: ClinicContract, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{contract.clinic_id}.yaml"
    data = contract.model_dump(mode="json")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    return path
