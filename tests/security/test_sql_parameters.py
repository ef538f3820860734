"""SQL is built with parameters, never by formatting input into strings.

ruff's S608 (selected in pyproject.toml) flags SQL assembled with f-strings, ``%`` or
``.format``; the few exceptions build statements from identifiers Tandem controls (table
names from a fixed tuple, mart names from the code) and carry ``noqa: S608`` with a reason.
This test runs the check and reviews every exception.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tandem.settings import REPO_ROOT

CODE = ["tandem", "flows", "transforms", "dashboards"]


def test_ruff_finds_no_sql_built_from_strings():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "S608",
                           "--output-format", "concise", *CODE], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Values that come from files, requests or users: never inside an f-string of SQL.
INPUT_NAMES = re.compile(
    r"\b(value|values|clinic|clinic_id|client|client_id|client_key|path|source_name|reason|"
    r"user|username|email|filename|file_name|name_from|sha|sha256|raw|text|data|query|"
    r"instrument|therapist|therapist_id|date|session_date|batch_id|pick|params)\b")


def _sql_fstrings():
    pattern = re.compile(r"\.(execute|sql|executemany)\(\s*f[\"']")
    for folder in CODE:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    yield path, n, line


def test_sql_fstrings_interpolate_identifiers_never_input_values():
    """Every ``{...}`` in SQL built with an f-string is a table or column name Tandem owns."""
    suspicious = []
    for path, n, line in _sql_fstrings():
        for hole in re.findall(r"\{([^}]*)\}", line.split("#", 1)[0]):
            if INPUT_NAMES.search(hole):
                suspicious.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    assert suspicious == [], "\n".join(suspicious)


def test_the_scan_sees_the_known_identifier_interpolations():
    """The scan is alive: it finds the snapshot writer's ``CREATE TABLE "{name}"``."""
    assert any(path.name == "publish.py" for path, _, _ in _sql_fstrings())
