"""The rules the code keeps, checked as part of the suite (and by CI): ruff's whole rule set
over the tree (S608 among them: SQL is built with parameters, never by formatting input into
strings), the layering contract (``lint-imports``, configured in pyproject.toml), and a
reason on every local exemption from the SQL rule."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=REPO_ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing_across_the_tree():
    proc = _run(sys.executable, "-m", "ruff", "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sql_rule_is_selected_for_the_whole_tree():
    """S608 must stay selected, with no per-file ignore that switches it off somewhere."""
    proc = _run(sys.executable, "-m", "ruff", "check", "--show-settings", "tandem/app/cli.py")
    assert "S608" in proc.stdout
    assert "per_file_ignores" not in proc.stdout or "S608" not in proc.stdout.split(
        "per_file_ignores", 1)[1].split("\n\n", 1)[0]


def test_every_sql_exemption_says_why():
    bare = []
    for path in REPO_ROOT.rglob("*.py"):
        if ".venv" in path.parts or "tandem-data" in path.parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"noqa:[^#\"']*\bS608\b(?!\s*[-—]\s*\S)", line):
                bare.append(f"{path.relative_to(REPO_ROOT)}:{n}")
    assert bare == [], "an SQL exemption without a reason ('- why' after it): " + ", ".join(bare)


def test_layering_contract_holds():
    lint = shutil.which("lint-imports", path=str(BIN)) or shutil.which("lint-imports")
    assert lint, "import-linter is part of the dev dependencies"
    proc = _run(lint, "--no-cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
