"""The command line starts light, and an installed (non-editable) Tandem finds its shipped
contracts and dashboard through package resources, not the repository's folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HEAVY = ("polars", "duckdb", "prefect", "great_expectations", "streamlit", "pandas",
         "pydantic_settings", "pyarrow", "fastapi")


def _py(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, **kw)


def test_importing_the_command_line_loads_no_pipeline_library():
    """`tandem --help` and processes that only need a command's signature pay for Typer alone
    (the import time itself is measured by the benchmarks, not asserted here)."""
    loaded = "sorted({m.split('.')[0] for m in sys.modules} & set(" + repr(HEAVY) + "))"
    proc = _py(f"import sys, json, tandem.app.cli; print(json.dumps({loaded}))")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "tandem.app.cli", "--help"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    for command in ("ingest", "aggregate", "dashboard", "demo", "generate", "serve", "tokens",
                    "backup", "restore", "users", "export"):
        assert command in proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Tandem installed as a wheel (not editable) into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    # build from a copy, so the build leaves nothing in the checkout
    source = tmp_path_factory.mktemp("source") / "tandem"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "tests", "docs", "tandem-data", "__pycache__", "build", "*.egg-info",
        ".ruff_cache", ".pytest_cache", ".hypothesis"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def test_installed_tandem_finds_its_contracts_and_dashboard(installed, tmp_path):
    code = ("import json, tandem, dashboards\n"
            "from importlib.resources import files\n"
            "from tandem.core.settings import Settings\n"
            "from tandem.core.contracts import load_instruments\n"
            "s = Settings()\n"
            "print(json.dumps({'tandem': tandem.__file__, 'contracts': str(s.contracts_dir),\n"
            "  'rules': s.rules_path.is_file(), 'instruments': sorted(load_instruments(s)),\n"
            "  'app': str(files('dashboards') / 'app.py')}))")
    # run from an unrelated folder that has a data_contracts/ of its own: it must not shadow
    (tmp_path / "data_contracts" / "instruments").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(installed), "TANDEM_HOME": str(tmp_path / "home")}
    proc = _py(code, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["tandem"].startswith(str(installed))
    assert found["contracts"].startswith(str(installed)) and found["rules"]
    assert {"ORS", "PHQ9", "GAD7", "SRS"} <= set(found["instruments"])
    assert found["app"].startswith(str(installed))


def test_a_data_contracts_folder_in_the_working_directory_does_not_hide_the_shipped_one(
        tmp_path):
    (tmp_path / "data_contracts" / "clinics").mkdir(parents=True)  # e.g. `generate --out .`
    proc = _py("from tandem.core.settings import Settings; print(Settings().rules_path)",
               cwd=tmp_path, env={**os.environ, "TANDEM_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO_ROOT / "data_contracts" / "rules.yaml")
