"""Same seed, same bytes (in any number of worker processes); another seed, other data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tandem.synth import FaultRates, GenerateOptions, generate


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run(out: Path, seed: int, workers: int) -> dict[str, str]:
    generate(GenerateOptions(out=out, seed=seed, clinics=8, clients_per_clinic=24,
                             workers=workers, faults=FaultRates().scaled(5)))
    return _digest(out)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("det") / "a"
    return out, _run(out, 3, workers=1)


def test_same_seed_same_bytes(first: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, a = first
    assert _run(tmp_path / "b", 3, workers=2) == a
    assert "manifest.json" in a and "truth_episodes.parquet" in a
    assert sum(name.endswith(".xlsx") for name in a) >= 2


def test_another_seed_other_data(first: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, a = first
    c = _run(tmp_path / "c", 4, workers=1)
    assert a["manifest.json"] != c["manifest.json"]


def test_rerun_into_same_folder_replaces_it(first: tuple[Path, dict[str, str]]) -> None:
    out, a = first
    assert _run(out, 3, workers=1) == a
