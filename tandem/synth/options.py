"""What a generation run is asked for: size, seed, planted effects and fault rates.

Everything a run writes derives from these options and the seed, so the options are
copied into the manifest verbatim and a run can be repeated byte for byte.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

Period = Literal["day", "week", "month"]

# The default "today" of every generated data set: all true session dates fall before it.
DEFAULT_AS_OF = dt.date(2026, 6, 30)
DEFAULT_CLINICS = 8
DEFAULT_CLIENTS_PER_CLINIC = 60
# Clients and clinics both grow with sqrt(scale), so --scale S gives about S times the data.
CHUNK_CLIENTS = 4000


@dataclass(frozen=True)
class EffectSizes:
    """The planted effects (defaults from DOMAIN.md: Flückiger 2018 r = .28, Johns 2019 5%)."""

    alliance_outcome_r: float = 0.28
    practice_effect_ors: float = 4.0
    therapist_variance_share: float = 0.05
    alliance_outcome_r_phq9: float = -0.28
    practice_effect_phq9: float = -3.0

    def without_effects(self) -> EffectSizes:
        """``--no-effect``: alliance and practices do nothing; therapists still differ."""
        return replace(
            self,
            alliance_outcome_r=0.0,
            practice_effect_ors=0.0,
            alliance_outcome_r_phq9=0.0,
            practice_effect_phq9=0.0,
        )


@dataclass(frozen=True)
class FaultRates:
    """Probability of each fault: per output record (row, line) or per file.

    Row rates apply to the records of every format (a canonical item row, a REDCap
    record/event row, a FHIR resource line, an Excel session row); a record gets at most
    one row fault. File rates apply per delivered file; a file gets at most one.
    """

    out_of_range: float = 0.003
    missing_item: float = 0.003
    impossible_date: float = 0.001
    future_date: float = 0.001
    unknown_therapist: float = 0.001
    date_swap: float = 0.002
    duplicate_row: float = 0.003
    conflicting_duplicate: float = 0.001
    whitespace: float = 0.003
    # per file
    bom: float = 0.05
    duplicate_file: float = 0.02
    corrected_file: float = 0.02
    truncated_file: float = 0.01
    schema_drift: float = 0.01
    # per clinic: clinics whose contract says latin-1 (and whose files need it)
    latin1_clinics: bool = True

    ROW_KINDS = (
        "out_of_range",
        "missing_item",
        "impossible_date",
        "future_date",
        "unknown_therapist",
        "date_swap",
        "duplicate_row",
        "conflicting_duplicate",
        "whitespace",
    )
    FILE_KINDS = ("duplicate_file", "corrected_file", "truncated_file", "schema_drift")

    @classmethod
    def clean(cls) -> FaultRates:
        """``--clean``: no faults of any kind (and every file UTF-8)."""
        zeros = {k: 0.0 for k in (*cls.ROW_KINDS, *cls.FILE_KINDS, "bom")}
        return cls(**zeros, latin1_clinics=False)

    def scaled(self, factor: float) -> FaultRates:
        """Every rate times ``factor`` (``--fault-scale``), capped so a record gets one."""
        kinds = (*self.ROW_KINDS, *self.FILE_KINDS, "bom")
        return replace(self, **{k: min(getattr(self, k) * factor, 0.2) for k in kinds})

    def row_total(self) -> float:
        return sum(getattr(self, k) for k in self.ROW_KINDS)


@dataclass(frozen=True)
class GenerateOptions:
    """One generation run. ``scale`` multiplies both clinics and clients by sqrt(scale)."""

    out: Path
    seed: int = 42
    clinics: int | None = None
    clients_per_clinic: int | None = None
    scale: float = 1.0
    period: Period = "month"
    as_of: dt.date = DEFAULT_AS_OF
    effects: EffectSizes = field(default_factory=EffectSizes)
    faults: FaultRates = field(default_factory=FaultRates)
    workers: int = 1

    @property
    def n_clinics(self) -> int:
        if self.clinics is not None:
            return self.clinics
        return max(DEFAULT_CLINICS, round(DEFAULT_CLINICS * self.scale**0.5))

    @property
    def n_clients_per_clinic(self) -> int:
        if self.clients_per_clinic is not None:
            return self.clients_per_clinic
        return max(4, round(DEFAULT_CLIENTS_PER_CLINIC * self.scale**0.5))

    def to_json(self) -> dict:
        """The options as written to the manifest (resolved sizes included)."""
        d = asdict(self)
        d.pop("out")  # where it was written does not change the bytes
        d["as_of"] = self.as_of.isoformat()
        d["n_clinics"] = self.n_clinics
        d["n_clients_per_clinic"] = self.n_clients_per_clinic
        d.pop("workers")  # does not change the output
        return d
