"""Instruments and clinic source contracts, loaded from YAML in ``data_contracts/``.

Contracts are data: adding a questionnaire or a clinic means adding a YAML file.
These models validate that data once, so every layer reads the same definitions.
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # the models need no settings; only the loaders take them
    from tandem.core.settings import Settings


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


# --- How individual change is judged: one ``change:`` block per instrument ------------------
# The methods of the R package clinicalsignificance v3 (the reference implementation) and their
# original papers; docs/outcomes.md states each formula and the boundary semantics.

ChangeMethod = Literal["threshold", "anchor", "percentage", "JT", "GLN", "HLL", "EN", "NK",
                       "HA", "HLM"]
# Methods whose index is standardised and compared with a normal critical value.
INDEX_METHODS = frozenset({"JT", "GLN", "HLL", "EN", "NK", "HA", "HLM"})
# Methods that need statistics of a reference sample (means, SDs, correlation, a fitted model).
SAMPLE_METHODS = frozenset({"GLN", "HLL", "EN", "NK", "HA", "HLM"})


class NormSpec(_Model):
    """A population's mean and SD on the instrument (e.g. functional norms), with its source.
    A null value means: taken from the reference sample's intake scores (the package's
    clinical population)."""

    mean: float | None = None
    sd: float | None = Field(default=None, gt=0)
    source: str | None = None


class ChangeCutoff(_Model):
    """The clinical cutoff: published (per population), or Jacobson & Truax a / b / c from
    norms. ``value_belongs_to`` says on which side a score exactly on the cutoff lies:
    ``clinical`` (PHQ-9 10 is a case), ``functional`` (ORS 25 is non-clinical) or ``neither``
    (the package: clinical before only below it, functional after only beyond it)."""

    kind: Literal["published", "a", "b", "c"]
    value: float | None = None
    values: dict[str, float] = Field(default_factory=dict)  # per population (ORS adult ...)
    default_population: str | None = None
    value_belongs_to: Literal["clinical", "functional", "neither"] = "neither"
    # Criterion b: 2 SD of the functional population (the paper) or of the clinical sample
    # (what the package computes).
    b_sd: Literal["functional", "clinical"] = "functional"
    functional: NormSpec | None = None
    dysfunctional: NormSpec | None = None  # None: the reference sample's intake scores
    sources: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> ChangeCutoff:
        if self.kind == "published":
            if self.value is None and not self.values:
                raise ValueError("a published cutoff needs value or values")
            if self.values and self.value is None and self.default_population not in self.values:
                raise ValueError("published values need a default_population among them")
        elif self.value is not None or self.values:
            raise ValueError(f"cutoff kind {self.kind} is computed: give norms, not a value")
        func = self.functional
        if self.kind in ("b", "c") and (func is None or func.mean is None):
            raise ValueError(f"cutoff {self.kind} needs the functional mean")
        needs_func_sd = self.kind == "c" or (self.kind == "b" and self.b_sd == "functional")
        if needs_func_sd and (func is None or func.sd is None):
            raise ValueError(f"cutoff {self.kind} needs the functional SD")
        return self

    def published(self, population: str | None = None) -> float | None:
        """The published value for a population (default: the definition's)."""
        if self.kind != "published":
            return None
        key = population or self.default_population
        if key is not None and key in self.values:
            return float(self.values[key])
        return None if self.value is None else float(self.value)


class ChangeRule(_Model):
    """One instrument's way to judge individual change (docs/outcomes.md).

    ``method``: ``threshold`` (a published reliable change in points), ``anchor`` (a minimal
    important difference in points), ``percentage`` (change relative to intake), or a reliable
    change index: ``JT`` Jacobson & Truax (1991), ``GLN`` Gulliksen-Lord-Novick (Hsu 1989),
    ``HLL`` Hsu-Linn-Lord, ``EN`` Edwards-Nunnally (Speer 1992), ``NK`` Nunnally & Kotsch
    (1983), ``HA`` Hageman & Arrindell (1999), ``HLM`` empirical Bayes slopes of a random
    slope model (Raudenbush & Bryk 2002)."""

    method: ChangeMethod
    threshold: float | None = Field(default=None, gt=0)
    threshold_deterioration: float | None = Field(default=None, gt=0)
    mid_improvement: float | None = Field(default=None, gt=0)
    mid_deterioration: float | None = Field(default=None, gt=0)
    pct_improvement: float | None = Field(default=None, gt=0)
    pct_deterioration: float | None = Field(default=None, gt=0)
    reliability: float | None = Field(default=None, gt=0, lt=1)
    reliability_post: float | None = Field(default=None, gt=0, lt=1)  # NK; default reliability
    sd_pre: float | None = Field(default=None, gt=0)  # JT: published SD at intake; null = sample
    alpha: float = Field(default=0.05, gt=0, lt=1)
    sided: Literal["two", "one"] | None = None  # default: one for HA, two otherwise
    boundary: Literal["inclusive", "strict"] | None = None  # default: see ``inclusive``
    min_measurements: int = Field(default=3, ge=3)  # HLM: scores an episode needs
    score_decimals: int | None = Field(default=None, ge=0)  # default: the item decimals
    # Reference sample of the sample-based methods (and of a/b/c without dysfunctional norms):
    # every closed episode with a pair of scores on the instrument, all clinics of the snapshot;
    # below this many episodes those statistics (and so the index) are not computed.
    min_reference_episodes: int = Field(default=20, ge=2)
    cutoff: ChangeCutoff | None = None
    harmed: bool = True  # False folds "harmed" into "deteriorated"
    sources: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parameters(self) -> ChangeRule:
        needs = {"threshold": "threshold", "anchor": "mid_improvement",
                 "percentage": "pct_improvement"}
        if self.method in needs and getattr(self, needs[self.method]) is None:
            raise ValueError(f"method {self.method} needs {needs[self.method]}")
        if self.method in INDEX_METHODS - {"HLM"} and self.reliability is None:
            raise ValueError(f"method {self.method} needs reliability")
        if self.sd_pre is not None and self.method != "JT":
            raise ValueError("sd_pre (a published SD) is for method JT; the other indices use "
                             "the reference sample's statistics")
        if self.reliability_post is not None and self.method != "NK":
            raise ValueError("reliability_post is for method NK")
        own = {"threshold": ("threshold", "threshold_deterioration"),
               "anchor": ("mid_improvement", "mid_deterioration"),
               "percentage": ("pct_improvement", "pct_deterioration")}
        for method, names in own.items():
            if self.method != method and any(getattr(self, n) is not None for n in names):
                raise ValueError(f"{', '.join(names)} belong to method {method}")
        return self

    @property
    def critical_sided(self) -> str:
        return self.sided or ("one" if self.method == "HA" else "two")

    @property
    def inclusive(self) -> bool:
        """Points and percentages: a change of exactly the threshold counts (the package's
        ``>=``); indices: strict (``|RCI| > crit``)."""
        if self.boundary is not None:
            return self.boundary == "inclusive"
        return self.method not in INDEX_METHODS

    @property
    def improvement_threshold(self) -> float | None:
        return {"threshold": self.threshold, "anchor": self.mid_improvement,
                "percentage": self.pct_improvement}.get(self.method)

    @property
    def deterioration_threshold(self) -> float | None:
        own = {"threshold": self.threshold_deterioration, "anchor": self.mid_deterioration,
               "percentage": self.pct_deterioration}.get(self.method)
        return own if own is not None else self.improvement_threshold

    @property
    def uses_sample(self) -> bool:
        """Whether classifying one episode needs statistics of other episodes."""
        sample_cutoff = self.cutoff is not None and self.cutoff.kind != "published" and (
            self.cutoff.kind == "a" or self.cutoff.dysfunctional is None
            or self.cutoff.b_sd == "clinical")
        return (self.method in SAMPLE_METHODS or (self.method == "JT" and self.sd_pre is None)
                or sample_cutoff)


class Benchmark(_Model):
    """A published pre-post effect size to read a figure against (e.g. Gaskell et al. 2023)."""

    d: float
    label: str
    source: str


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
    # How change is judged (method, parameters, cutoff, categories): the ``change:`` block.
    # Instruments without it keep the older keys (reliable_change, clinical_cutoff, norms),
    # which ``change_rule`` turns into the same block.
    change: ChangeRule | None = None
    benchmark: Benchmark | None = None
    alliance_flags: AllianceFlags | None = None
    sources: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_change_definition(self) -> Instrument:
        if self.change is not None and (self.reliable_change is not None
                                        or self.clinical_cutoff or self.norms is not None):
            raise ValueError(f"{self.code}: give change, or the older reliable_change / "
                             "clinical_cutoff / norms, not both")
        return self

    @property
    def change_rule(self) -> ChangeRule | None:
        """The change rule: the ``change`` block, or the one the older keys describe (a
        published threshold, inclusive; else Jacobson-Truax from sd_pre and reliability; the
        published cutoff, or a / b / c from norms; the cutoff value on the functional side when
        higher is better, on the clinical side (caseness) when higher is worse)."""
        if self.change is not None:
            return self.change
        rc = self.reliable_change
        if rc is None:
            return None
        side = "functional" if self.higher_is_better else "clinical"
        cut = None
        if self.clinical_cutoff:
            values = {k: float(v) for k, v in self.clinical_cutoff.items()
                      if k != "default" and isinstance(v, int | float)}
            default = self.clinical_cutoff.get("default")
            cut = ChangeCutoff(kind="published", value_belongs_to=side,
                               value=float(default) if isinstance(default, int | float)
                               else None, values=values,
                               default_population=default if isinstance(default, str) else None)
        elif self.norms is not None and (self.norms.functional or self.norms.dysfunctional):
            f, d = self.norms.functional, self.norms.dysfunctional
            kind = "c" if f and d else ("b" if f else "a")
            cut = ChangeCutoff(
                kind=kind, value_belongs_to=side,
                functional=NormSpec(mean=f.mean, sd=f.sd) if f else None,
                dysfunctional=NormSpec(mean=d.mean, sd=d.sd) if d else None)
        if rc.threshold is not None:
            return ChangeRule(method="threshold", threshold=rc.threshold, cutoff=cut,
                              harmed=True)
        return ChangeRule(method="JT", sd_pre=rc.sd_pre, reliability=rc.reliability, cutoff=cut)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher_is_better"

    def cutoff(self, population: str | None = None) -> float | None:
        """The published clinical cutoff for a population (default as the definition says);
        None when the cutoff is computed from norms or there is none."""
        rule = self.change_rule
        if rule is None or rule.cutoff is None:
            return None
        return rule.cutoff.published(population)

    @property
    def score_decimals(self) -> int | None:
        """Decimals a total is recorded to: the change block's, else the items' for a sum."""
        rule = self.change_rule
        if rule is not None and rule.score_decimals is not None:
            return rule.score_decimals
        if self.scoring.method == "sum" and self.item_range.decimals is not None:
            return self.item_range.decimals
        return None


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


_M = TypeVar("_M", bound="_Model")


def _load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the file is not a mapping of fields")
    return data


def _default_settings() -> Settings:
    from tandem.core.settings import get_settings

    return get_settings()


def _contract_dirs(settings: Settings, include_site: bool = True) -> list[Path]:
    """Shipped definitions first, the site's (``TANDEM_HOME/data_contracts``) after them."""
    dirs = [settings.contracts_dir]
    if include_site and \
            settings.local_contracts_dir.resolve() != settings.contracts_dir.resolve():
        dirs.append(settings.local_contracts_dir)
    return dirs


log = logging.getLogger("tandem.contracts")
_told: set[tuple[str, Path]] = set()


def _yaml_files(directory: Path) -> tuple[tuple[Path, int], ...]:
    """The YAML files of a folder with their modification times (the loaders' cache key,
    so an edited contract is read again)."""
    if not directory.is_dir():
        return ()
    return tuple((p, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.yaml")))


class ContractError(ValueError):
    """A contract file that cannot be used; the message names the file and what is wrong,
    in sentences (``tandem contracts check`` lists every such problem)."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {' '.join(problems)}")


def problems_of(exc: Exception) -> list[str]:
    """A pydantic validation error (or another) as sentences, one per problem."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return [str(exc).splitlines()[0].rstrip(".") + "."]
    out = []
    for e in errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "the file"
        msg = str(e.get("msg", "is not valid")).rstrip(".")
        given = e.get("input")
        shown = "" if e.get("type") == "missing" or isinstance(given, dict | list) else (
            f" (it is {given!r})")
        out.append(f"{where}: {msg[:1].lower() + msg[1:]}{shown}.")
    return out


def _validated(model: type[_M], path: Path) -> _M:
    try:
        data = _load_yaml(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ContractError(path, [f"not valid YAML{where}."]) from exc
    except ValueError as exc:
        raise ContractError(path, [str(exc).split(": ", 1)[-1] + "."]) from exc
    try:
        return model.model_validate(data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ContractError(path, problems_of(exc)) from exc


@lru_cache(maxsize=32)
def _instrument_files(files: tuple[tuple[Path, int], ...]) -> dict[str, Instrument]:
    out: dict[str, Instrument] = {}
    for path, _ in files:
        inst = _validated(Instrument, path)
        if inst.code != path.stem:
            raise ContractError(path, [f"its code is {inst.code!r}, but the file is named "
                                       f"{path.name}; name it {inst.code}.yaml."])
        out[inst.code] = inst
    return out


@lru_cache(maxsize=32)
def _clinic_files(files: tuple[tuple[Path, int], ...]) -> dict[str, tuple[ClinicContract, Path]]:
    out: dict[str, tuple[ClinicContract, Path]] = {}
    for path, _ in files:
        contract = _validated(ClinicContract, path)
        out[contract.clinic_id] = (contract, path)
    return out


def _tell_override(kind: str, code: str, path: Path) -> None:
    """A site file replaces a shipped definition of the same code: say so, once."""
    if (kind, path) in _told:
        return
    _told.add((kind, path))
    log.warning("the site's %s %s (%s) replaces the shipped definition", kind, code, path)


def contract_sources(settings: Settings | None = None,
                     include_site: bool = True) -> dict[str, dict[str, list[Path]]]:
    """Where each instrument and clinic contract in effect comes from: by kind
    (``instruments``, ``clinics``) and code, every file that defines it, the one in effect
    last (shipped first, the site's after it)."""
    settings = settings or _default_settings()
    out: dict[str, dict[str, list[Path]]] = {"instruments": {}, "clinics": {}}
    for d in _contract_dirs(settings, include_site):
        for code in _instrument_files(_yaml_files(d / "instruments")):
            out["instruments"].setdefault(code, []).append(d / "instruments" / f"{code}.yaml")
        for clinic_id, (_, path) in _clinic_files(_yaml_files(d / "clinics")).items():
            out["clinics"].setdefault(clinic_id, []).append(path)
    return out


def load_instruments(settings: Settings | None = None,
                     include_site: bool = True) -> dict[str, Instrument]:
    """Every instrument, by code: the shipped ones (``data_contracts/instruments/``) and the
    site's (``TANDEM_HOME/data_contracts/instruments/``); a site file with the code of a
    shipped one replaces it, and a warning says so (``include_site=False``: the shipped
    ones alone)."""
    settings = settings or _default_settings()
    out: dict[str, Instrument] = {}
    for i, d in enumerate(_contract_dirs(settings, include_site)):
        found = _instrument_files(_yaml_files(d / "instruments"))
        if i:
            for code in sorted(found.keys() & out.keys()):
                _tell_override("instrument", code, d / "instruments" / f"{code}.yaml")
        out.update(found)
    return out


def load_clinic_contracts(settings: Settings | None = None,
                          include_site: bool = True) -> dict[str, ClinicContract]:
    """Every clinic contract, shipped ones first, the site's (TANDEM_HOME) replacing them
    (a warning says so)."""
    settings = settings or _default_settings()
    out: dict[str, ClinicContract] = {}
    for i, d in enumerate(_contract_dirs(settings, include_site)):
        found = _clinic_files(_yaml_files(d / "clinics"))
        if i:
            for clinic_id in sorted(found.keys() & out.keys()):
                _tell_override("clinic contract", clinic_id, found[clinic_id][1])
        out.update({clinic_id: contract for clinic_id, (contract, _) in found.items()})
    return out


def write_clinic_contract(contract: ClinicContract, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{contract.clinic_id}.yaml"
    data = contract.model_dump(mode="json")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
    return path


# --- Mart contracts: data_contracts/marts/<mart>.yaml ---------------------------------------
# Every published table (mart or audit copy) has one: grain, key, columns with their DuckDB
# types, nullability, accepted values and ranges. docs/marts.md is rendered from them
# (render_markdown; `python -m tandem.app.marts_doc`) and tests/core/test_mart_contracts.py
# checks a snapshot built by the real pipeline against them.

MartFamily = Literal["quality", "export", "director", "reference", "audit"]
InstrumentKind = Literal["outcome", "alliance", "practice"]


class MartRange(_Model):
    """Inclusive bounds of a numeric column's non-null values (either may be open)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> MartRange:
        if self.min is None and self.max is None:
            raise ValueError("a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class MartColumn(_Model):
    """One published column; or, with ``pattern`` (e.g. ``practice_*``), one column per item
    of the instrument ``items_of``, ``*`` replaced by the item's name, in item order."""

    name: str | None = None
    pattern: str | None = None
    items_of: str | None = None
    type: str  # the DuckDB type as published (DESCRIBE): VARCHAR, DOUBLE, BIGINT[] ...
    description: str
    nullable: bool
    # Allowed non-null values: these, plus the codes of instruments of these kinds, plus the
    # item names of that instrument. No check when all three are empty.
    accepted_values: list[str | bool | int | float] = Field(default_factory=list)
    accepted_instrument_kinds: list[InstrumentKind] = Field(default_factory=list)
    accepted_item_names_of: str | None = None
    range: MartRange | None = None

    @model_validator(mode="after")
    def _named_once(self) -> MartColumn:
        if (self.name is None) == (self.pattern is None):
            raise ValueError("a column has either a name or a pattern")
        if self.pattern is not None and (self.pattern.count("*") != 1 or not self.items_of):
            raise ValueError(f"pattern {self.pattern!r} needs exactly one '*' and items_of")
        if self.name is not None and self.items_of:
            raise ValueError(f"column {self.name}: items_of goes with a pattern")
        return self

    @property
    def label(self) -> str:
        return self.name or str(self.pattern)

    @property
    def checks_values(self) -> bool:
        return bool(self.accepted_values or self.accepted_instrument_kinds
                    or self.accepted_item_names_of)

    def names(self, instruments: dict[str, Instrument]) -> list[str]:
        """The published column names (a pattern expanded with the instrument's items)."""
        if self.name is not None:
            return [self.name]
        return [str(self.pattern).replace("*", n)
                for n in _item_names(instruments, str(self.items_of))]

    def allowed_values(self, instruments: dict[str, Instrument]) -> set | None:
        """Every allowed non-null value, or None when the column's values are not checked."""
        if not self.checks_values:
            return None
        out: set = set(self.accepted_values)
        out |= {c for c, i in instruments.items() if i.kind in self.accepted_instrument_kinds}
        if self.accepted_item_names_of:
            out |= set(_item_names(instruments, self.accepted_item_names_of))
        return out


def _item_names(instruments: dict[str, Instrument], code: str) -> list[str]:
    """An instrument's item names as the marts spell them (``<code>_<n>`` when unnamed)."""
    if code not in instruments:
        raise ValueError(f"mart contract names instrument {code!r}, which is not defined")
    inst = instruments[code]
    return [item.name or f"{code.lower()}_{item.number}" for item in inst.items]


class MartContract(_Model):
    """A published table: what one row is, which columns are unique together (``key``; a
    null grouping column counts as a value, "all"), and every column. ``alias_of``: the same
    table under another name (grain, key and columns come from the aliased contract).
    ``optional``: published only when ``published_when`` holds (e.g. the instruments exist)."""

    name: str
    family: MartFamily
    description: str
    grain: str = ""
    key: list[str] = Field(default_factory=list)  # [] = no unique key is promised
    suppressed: bool = False
    alias_of: str | None = None
    optional: bool = False
    published_when: str | None = None
    notes: list[str] = Field(default_factory=list)
    columns: list[MartColumn] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> MartContract:
        if self.name.startswith("dir_") and not (self.family == "director" and self.suppressed):
            raise ValueError(f"{self.name}: dir_* marts are director marts, suppressed")
        if self.suppressed and self.family != "director":
            raise ValueError(f"{self.name}: only director marts are suppressed")
        if self.optional != (self.published_when is not None):
            raise ValueError(f"{self.name}: an optional mart says when it is published")
        if self.alias_of is not None:
            if self.columns or self.key or self.grain:
                raise ValueError(f"{self.name}: an alias takes grain, key and columns from "
                                 f"{self.alias_of}")
            return self
        if not self.columns or not self.grain:
            raise ValueError(f"{self.name}: a mart contract needs a grain and columns")
        labels = [c.label for c in self.columns]
        if len(set(labels)) != len(labels):
            raise ValueError(f"{self.name}: a column is listed twice")
        named = {c.name for c in self.columns if c.name is not None}
        if missing := [k for k in self.key if k not in named]:
            raise ValueError(f"{self.name}: key columns {missing} are not columns")
        if len(set(self.key)) != len(self.key):
            raise ValueError(f"{self.name}: a key column is listed twice")
        if self.suppressed:
            flag = next((c for c in self.columns if c.name == "suppressed"), None)
            if flag is None or flag.type != "BOOLEAN" or flag.nullable or "n_clients" not in named:
                raise ValueError(f"{self.name}: a suppressed mart has n_clients and a "
                                 "non-null BOOLEAN suppressed column")
        return self

    def column_names(self, instruments: dict[str, Instrument]) -> list[str]:
        return [n for c in self.columns for n in c.names(instruments)]


def load_mart_contracts(settings: Settings | None = None) -> dict[str, MartContract]:
    """Every mart contract in ``<contracts_dir>/marts/``, by name (aliases resolved)."""
    settings = settings or _default_settings()
    out: dict[str, MartContract] = {}
    for path in sorted((settings.contracts_dir / "marts").glob("*.yaml")):
        try:
            contract = MartContract.model_validate(_load_yaml(path))
        except ValueError as exc:  # pydantic's ValidationError is one
            raise ValueError(f"{path}: {exc}") from exc
        if contract.name != path.stem:
            raise ValueError(f"{path}: name {contract.name!r} does not match the file name")
        out[contract.name] = contract
    for name, contract in out.items():
        if contract.alias_of is None:
            continue
        target = out.get(contract.alias_of)
        if target is None or target.alias_of is not None:
            raise ValueError(f"{name}: alias_of {contract.alias_of!r} is not a mart contract")
        out[name] = contract.model_copy(
            update={"grain": target.grain, "key": target.key, "columns": target.columns})
    return out


# The page's fixed prose; everything about a single mart comes from its contract.
_MARTS_INTRO = """\
# Published marts

<!-- Generated from data_contracts/marts/*.yaml by `python -m tandem.app.marts_doc`.
     Edit the contracts (or the prose in tandem.core.contracts.render_markdown), not this page:
     tests/core/test_mart_contracts.py fails when the two differ. -->

Built by `transforms.marts.build_marts(responses, instruments, params)` (run by the `aggregate`
flow) and published as tables of one DuckDB snapshot (`tandem.core.published`), together with a
copy of the warehouse's audit tables. Definitions: see [outcomes.md](outcomes.md).

Every published table has a contract, `data_contracts/marts/<table>.yaml`: what one row is
(grain), the columns that are unique together (key; a null grouping column counts as a value,
"all"), and each column's DuckDB type, whether it may be null, its accepted values and range.
Contracts are data: a new mart needs a YAML file, no Python. This page is generated from them,
and `tests/core/test_mart_contracts.py` checks a snapshot built by the real pipeline against
every contract.

## Naming convention

- **`dir_*`** — director-facing aggregates. Small-cell suppression is applied to every one of
  them in one place (`transforms/suppression.py`): a row with fewer than `min_cell_size`
  (default 10, setting `TANDEM_MIN_CELL_SIZE`) distinct clients has all its figures *and* its
  counts set to null and `suppressed = true`. Show "suppressed", never 0. Secondary suppression
  then hides further cells until no suppressed value follows from the figures shown with it (all
  clinics minus the clinics shown, a year minus its quarters, n minus its levels ...; see
  [outcomes.md](outcomes.md#suppression-suppressionpy)). Every figure has its
  `n`/`n_clients` and a 95% interval (`*_ci_low`, `*_ci_high`; Wilson for rates).
  Grouping columns that are null mean "all" (e.g. `clinic_id` null = all clinics pooled).
- **no prefix** — row-level marts for the quality team (client pseudonyms, episode ids, batch
  lineage). Not suppressed; not for directors.
- **`outcome_definitions`** — the reference table of how change is judged per instrument
  (method, parameters, cutoff, categories, benchmark, sources): definitions, no client data.
- **`audit_*`** — copies of the warehouse's `batch`, `quarantine` and `validation_result`
  tables as of the publish ([warehouse.md](warehouse.md)), for the quality team's pages.
- `therapist_alliance` is a kept alias of `dir_therapist_alliance` (the milestone-1 name; already
  suppressed). Prefer the `dir_` name.

Lineage: figure → `episode_id` (`episode_measure`, `episode_outcome`) → sessions
(`episode_session`: date, number, therapist) → `batch_ids` (→ `audit_batch`).
"""

_FAMILY_HEADINGS = {  # in page order
    "quality": "Row-level marts (quality team)",
    "export": "Export marts",
    "director": "Director marts (suppressed)",
    "reference": "Reference tables (definitions, no client data)",
    "audit": "Audit tables",
}

_FAMILY_NOTES = {
    "quality": """\
**Per-client state.** `has_outcome` / `has_alliance` are computed per session in
`transforms.client_state` (stage 1, `agg_episode_session`); episode measures are kept unjudged
there (`STATE_VERSION` 3, so stored state is rebuilt once) and judged in `population_marts`
against the reference sample, like every other mart computed from the state.
""",
    "director": """\
**Periods.** A period filter uses the `*_period` marts (and the `period` rows of `dir_funnel`,
`dir_activity`): every period is aggregated from the episodes (or sessions) and suppressed on its
own. Never sum monthly cells for a period: suppressed months would silently drop out.

The practice and alliance marts are **observational associations**, not causal effects (column
`observational = true`); say so wherever they are shown.
""",
}


def _md(text: str) -> str:
    """One table cell: a single line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code_list(values: list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _value_text(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _column_values(col: MartColumn) -> str:
    parts = []
    if col.checks_values:
        allowed = [f"`{_value_text(v)}`" for v in col.accepted_values]
        allowed += [f"{kind} instrument codes" for kind in col.accepted_instrument_kinds]
        if col.accepted_item_names_of:
            allowed.append(f"item names of {col.accepted_item_names_of}")
        parts.append(", ".join(allowed))
    if col.range is not None:
        lo, hi = col.range.min, col.range.max
        if lo is not None and hi is not None:
            parts.append(f"{lo:g} to {hi:g}")
        else:
            parts.append(f"≥ {lo:g}" if lo is not None else f"≤ {hi:g}")
    return "; ".join(parts)


def _mart_section(c: MartContract) -> list[str]:
    out = [f"### `{c.name}`", "", _md(c.description), ""]
    facts = [f"**One row per:** {_md(c.grain)}.",
             f"**Key:** {_code_list(c.key)}." if c.key else "**Key:** none (rows need not be "
             "unique).",
             f"**Suppressed:** {'yes' if c.suppressed else 'no'}."]
    if c.optional:
        facts.append(f"**Published only when** {_md(str(c.published_when))}.")
    out += [" ".join(facts), ""]
    for note in c.notes:
        out += [_md(note), ""]
    if c.alias_of is not None:
        out += [f"Same grain, key and columns as [`{c.alias_of}`](#{c.alias_of}).", ""]
        return out
    out += ["| column | type | null | values | meaning |", "|---|---|---|---|---|"]
    for col in c.columns:
        label = f"`{col.name}`" if col.name is not None else (
            f"`{col.pattern}` (one per item of {col.items_of})")
        out.append(f"| {label} | {col.type} | {'yes' if col.nullable else 'no'} | "
                   f"{_md(_column_values(col))} | {_md(col.description)} |")
    out.append("")
    return out


def render_markdown(contracts: dict[str, MartContract]) -> str:
    """docs/marts.md: the fixed introduction, a table of the marts per family, then every
    mart's columns, all from the contracts."""
    lines = [_MARTS_INTRO]
    by_family = {f: sorted((c for c in contracts.values() if c.family == f),
                           key=lambda c: c.name) for f in _FAMILY_HEADINGS}
    for family, heading in _FAMILY_HEADINGS.items():
        if not by_family[family]:
            continue
        lines += [f"## {heading}", "", "| table | one row per | key | what it holds |",
                  "|---|---|---|---|"]
        for c in by_family[family]:
            lines.append(f"| [`{c.name}`](#{c.name}) | {_md(c.grain)} | "
                         f"{_md(_code_list(c.key)) or '—'} | {_md(c.description)} |")
        lines.append("")
        if family in _FAMILY_NOTES:
            lines += [_FAMILY_NOTES[family]]
    lines += ["## Columns", "",
              "Per table: its grain and key, then every column as published (DuckDB type; "
              "null: whether the column may be null; values: accepted values and range).", ""]
    for family in _FAMILY_HEADINGS:
        for c in by_family[family]:
            lines += _mart_section(c)
    return "\n".join(lines).rstrip("\n") + "\n"
