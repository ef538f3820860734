"""Small generated data sets shared by the generator tests (made once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.synth import FaultRates, GenerateOptions, generate


def make_set(out: Path, **kw) -> Path:
    opts = dict(out=out, seed=7, clinics=8, clients_per_clinic=40, workers=1)
    opts.update(kw)
    generate(GenerateOptions(**opts))
    return out


@pytest.fixture(scope="session")
def faulty_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fault kind at a high rate, so each appears in every format."""
    rates = FaultRates(**{k: 0.025 for k in FaultRates.ROW_KINDS},
                       **{k: 0.08 for k in FaultRates.FILE_KINDS}, bom=0.1)
    return make_set(tmp_path_factory.mktemp("faulty"), faults=rates, clients_per_clinic=60)


@pytest.fixture(scope="session")
def clean_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_set(tmp_path_factory.mktemp("clean"), faults=FaultRates.clean(), period="week")
