"""``tandem generate`` through Typer's test runner, on a small app built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tandem.app.generate_cli import generate_command


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("generate")(generate_command)

    @app.command("noop")
    def noop() -> None:  # a second command, so "generate" is a subcommand as in tandem
        pass

    return app


def _run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["generate", *args])


SMALL = ("--clinics", "4", "--clients-per-clinic", "8", "--quiet", "--workers", "1")


def test_generates_a_data_set(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "set"
    res = _run(app, "--out", str(out), *SMALL, "--seed", "5", "--period", "week")
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["options"]["period"] == "week"
    assert len(list((out / "data_contracts" / "clinics").glob("*.yaml"))) == 4
    assert (out / "truth_episodes.parquet").exists()


def test_no_effect_and_clean(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "set"
    res = _run(app, "--out", str(out), *SMALL, "--no-effect", "--clean")
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    planted = manifest["truth"]
    assert planted["alliance_outcome_r"] == 0 and planted["practice_effect_ors"] == 0
    assert planted["practice_effect_phq9"] == 0 and manifest["faults"] == []


def test_fault_rate_option(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "set"
    res = _run(app, "--out", str(out), *SMALL, "--clean", "--fault-rate", "out_of_range=0.2")
    assert res.exit_code == 0, res.output
    kinds = {f["kind"] for f in json.loads((out / "manifest.json").read_text())["faults"]}
    assert kinds == {"out_of_range"}


@pytest.mark.parametrize("args", [
    ("--period", "year"),
    ("--as-of", "30/06/2026"),
    ("--fault-rate", "nonsense=0.1"),
    ("--fault-rate", "out_of_range=2"),
    ("--alliance-r", "0.99"),
    ("--clinics", "0"),
])
def test_bad_options_exit_2(app: typer.Typer, tmp_path: Path, args: tuple[str, ...]) -> None:
    res = _run(app, "--out", str(tmp_path / "set"), *SMALL, *args)
    assert res.exit_code == 2, res.output


def test_refuses_a_foreign_folder(app: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    res = _run(app, "--out", str(tmp_path), *SMALL)
    assert res.exit_code == 2
    assert (tmp_path / "mine.txt").exists()


def test_default_out_is_under_tandem_home(app: typer.Typer, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path / "home"))
    res = _run(app, *SMALL)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "home" / "synthetic" / "manifest.json").exists()
    installed = tmp_path / "home" / "data_contracts" / "clinics"
    assert len(list(installed.glob("*.yaml"))) == 4
