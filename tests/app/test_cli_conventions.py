"""The command line as a person sees it: help at 80 columns, errors as sentences with the
documented exit codes, quiet libraries, tables that fit, JSON for scripts, completion.

Each error path runs the real ``tandem`` in a subprocess (its output is what a user reads).
The help snapshot is ``tests/app/help_snapshot.txt``; after a deliberate change to a help
text, rewrite it with ``TANDEM_UPDATE_HELP_SNAPSHOT=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import CLINIC_CONTRACT, HEADER, REPO_ROOT, canonical_rows

SNAPSHOT = Path(__file__).with_name("help_snapshot.txt")
TANDEM = [sys.executable, "-m", "tandem.app.cli"]


def run(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    """``tandem ARGS`` as a user runs it: its own TANDEM_HOME, no Prefect server, 80 columns."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PREFECT_API"))}
    full.update(TANDEM_HOME=str(home), TANDEM_PSEUDONYM_KEY="test-only-key", COLUMNS="80",
                PYTHONPATH=str(REPO_ROOT), **(env or {}))
    return subprocess.run([*TANDEM, *args], capture_output=True, text=True, env=full,
                          timeout=timeout, cwd=home.parent, input=stdin)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The error message (``Error: ...``), joined if it was wrapped."""
    text = proc.stderr
    assert "Error: " in text, text
    return " ".join(text[text.index("Error: "):].split())


def assert_sentence(message: str) -> None:
    assert message.rstrip().endswith((".", ".)")), message
    assert "Traceback" not in message
    assert not re.search(r"\[['\"]", message), f"a Python list reached the user: {message}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A TANDEM_HOME with the northside contract."""
    home = tmp_path / "home"
    (home / "data_contracts" / "clinics").mkdir(parents=True)
    (home / "data_contracts" / "clinics" / "northside.yaml").write_text(CLINIC_CONTRACT)
    return home


def good_file(folder: Path, name: str = "ns_good.csv", clients: int = 3) -> Path:
    rows = "".join(canonical_rows(f"C{c}", "T01", "2026-01-05", 1, "ORS", [5, 6, 7, 8])
                   for c in range(clients))
    path = folder / name
    path.write_text(HEADER + rows)
    return path


def failing_file(folder: Path, name: str = "ns_bad.csv") -> Path:
    path = folder / name
    path.write_text("clinic_id,client_id,when\nnorthside,C1,2026-01-05\n")
    return path


# --- help ------------------------------------------------------------------------------------

def _commands(group, path=()):
    yield path
    for name, command in sorted(getattr(group, "commands", {}).items()):
        yield from _commands(command, (*path, name))


def help_texts() -> str:
    """``--help`` of the app and of every command, at 80 columns."""
    from typer.main import get_command

    from tandem.app.cli import app

    runner = CliRunner(env={"COLUMNS": "80"})
    out = []
    for path in _commands(get_command(app)):
        res = runner.invoke(app, [*path, "--help"], prog_name="tandem", terminal_width=80)
        assert res.exit_code == 0, res.output
        out.append(f"$ tandem {' '.join((*path, '--help'))}\n{res.output}")
    return "\n".join(out)


def test_help_matches_the_snapshot_at_80_columns():
    text = help_texts()
    if os.environ.get("TANDEM_UPDATE_HELP_SNAPSHOT"):
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8"), (
        "the help changed: review it, then run with TANDEM_UPDATE_HELP_SNAPSHOT=1")


def test_help_reads_as_written():
    text = help_texts()
    assert max(len(line) for line in text.splitlines()) <= 80
    for leak in ("<bool>", "<str>", "<int", "<list", "<path>", "{paths}", "[required]",
                 "...,...", "\u2026"):
        assert leak not in text, leak
    for command in ("ingest", "aggregate", "dashboard", "demo", "generate", "serve", "health",
                    "contracts", "tokens", "backup", "restore", "users", "export"):
        assert re.search(rf"^  {command}  ", text, re.M), command
    assert "Usage: tandem ingest [OPTIONS] PATH..." in text
    assert "--as-of DATE" in text and "--clinic CLINIC" in text and "-v, --verbose" in text


def test_version_and_completion(tmp_path):
    proc = run(tmp_path / "home", "--version")
    assert proc.returncode == 0 and re.fullmatch(r"tandem \d+\.\d+\.\d+\n", proc.stdout)
    script = Path(sys.executable).with_name("tandem")
    env = {**os.environ, "_TANDEM_COMPLETE": "complete_bash", "COMP_WORDS": "tandem ing",
           "COMP_CWORD": "1", "TANDEM_HOME": str(tmp_path / "home")}
    proc = subprocess.run([str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "ingest" in proc.stdout.split()
    # Typer guesses the shell from the parent processes (shellingham), which fails where no
    # shell started the tests ("Shell  not supported"); with detection off the option takes
    # the shell's name, as a user without a detectable shell would give it.
    proc = run(tmp_path / "home", "--show-completion", "bash",
               env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "_TANDEM_COMPLETE=complete_bash" in proc.stdout


# --- errors: a sentence and the documented code -----------------------------------------------

@pytest.mark.parametrize(("args", "code", "phrase"), [
    (["aggregate", "--as-of", "bogus"], 2, "'bogus' is not a date; write it as YYYY-MM-DD"),
    (["ingest", "--as-of", "2026-13-01", "."], 2, "'2026-13-01' is not a date"),
    (["ingest", "--clinic", "nowhere", "."], 2,
     "no contract for clinic 'nowhere'. Clinics with a contract: northside."),
    (["tokens", "issue", "nowhere"], 2, "no contract for clinic 'nowhere'"),
    (["tokens", "revoke", "northside"], 2, "northside has no token to revoke"),
    (["users", "add", "bob", "--role", "bogus"], 2,
     "'bogus' is not a role; use director, quality or admin."),
    (["users", "add", "bob", "--clinic", "northside", "--clinic", "nowhere"], 2,
     "no contract for clinic 'nowhere'"),
    (["users", "add", "bob", "--sso-only"], 2, "needs an e-mail address"),
    (["aggregate"], 4, "nothing to publish: the warehouse holds no batches yet"),
    (["export", "episodes", "--out", "x.csv"], 4, "nothing is published yet"),
    (["health"], 5, "tandem serve is not running"),
    (["generate", "--period", "year"], 2, "'year' is not a period; use day, week or month."),
    (["generate", "--fault-rate", "nonsense=0.1"], 2, "The kinds are"),
])
def test_each_error_is_a_sentence_with_its_exit_code(home, args, code, phrase):
    proc = run(home, *args, stdin="")
    assert proc.returncode == code, proc.stdout + proc.stderr
    text = " ".join((proc.stdout + proc.stderr).split())
    assert phrase in text
    assert "Password" not in text  # refused before any prompt
    if code != 5:
        assert_sentence(error_line(proc))


def test_an_unexpected_error_is_one_sentence_and_its_traceback_is_behind_v(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    proc = run(not_a_folder, "aggregate")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    message = error_line(proc)
    assert message.startswith("Error: unexpected ") and "run the command again with -v" in \
        message.lower()
    proc = run(not_a_folder, "-v", "aggregate")
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr


def test_contract_errors(home):
    clinics = home / "data_contracts" / "clinics"
    (clinics / "southbank.yaml").write_text(CLINIC_CONTRACT.replace("canonical_csv", "csv"))
    proc = run(home, "contracts", "check")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    assert "clinics/southbank.yaml: format: input should be 'canonical_csv', 'redcap_csv', " \
           "'fhir_ndjson' or 'excel' (it is 'csv')." in text
    assert "1 problem to fix" in text
    # Any other command names the broken contract in a sentence (exit 2), no traceback.
    proc = run(home, "ingest", str(good_file(home.parent)))
    assert proc.returncode == 2, proc.stderr
    message = error_line(proc)
    assert "southbank.yaml cannot be used: format: input should be" in message
    assert_sentence(message)


# --- what ingest, aggregate and export say --------------------------------------------------

def test_ingest_reports_at_80_columns_and_libraries_stay_quiet(home, tmp_path):
    inbox = tmp_path / "in"
    inbox.mkdir()
    good_file(inbox, "northside_2026-01_with_a_rather_long_export_name.csv")
    failing_file(inbox)
    proc = run(home, "ingest", str(inbox))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = proc.stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert re.search(r"^northside\s*$", out, re.M)
    width = out.splitlines()[0].index("status")  # the file column, folded when too long
    file_column = "".join(line[:width].strip() for line in out.splitlines()[2:6])
    assert "northside_2026-01_with_a_rather_long_export_name.csv" in file_column
    assert "Ingested 2 files (1 loaded and 1 failed): 12 rows loaded and 0 quarantined." in \
        " ".join(out.split())
    assert "1 file failed and is kept for a re-run:" in out
    assert re.search(r"^  ns_bad\.csv: .+", out, re.M)
    assert "missing therapist_id, session_date," in " ".join(out.split())  # not a list
    # Library noise reaches nobody (GX's docs-site message, Prefect's task runs).
    for noise in ("great_expectations", "Created temporary directory", "Task run",
                  "prefect", "Traceback"):
        assert noise not in proc.stderr, proc.stderr

    again = run(home, "--verbose", "ingest", "--quiet", str(inbox / "ns_bad.csv"))
    assert again.returncode == 3
    assert "see the table" not in again.stdout + again.stderr
    assert again.stdout.startswith("Ingested 1 file (1 failed)")  # no table before it
    assert "ns_bad.csv:" in again.stdout


def test_ingest_json_for_scripts(home, tmp_path):
    good = good_file(tmp_path)
    proc = run(home, "ingest", "--json", str(good))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["summary"]["files"] == 1 and data["summary"]["loaded"] == 1
    (entry,) = data["files"]
    assert entry["source_name"] == good.name and entry["rows_loaded"] == 12
    assert data["prefect_flow_run"] is None
    proc = run(home, "ingest", "--json", str(failing_file(tmp_path)))
    assert proc.returncode == 3 and json.loads(proc.stdout)["summary"]["failed"] == 1


def test_aggregate_and_export_say_when_there_is_nothing_to_show(home, tmp_path):
    run(home, "ingest", str(failing_file(tmp_path)))
    proc = run(home, "aggregate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Published snapshot ")
    assert "Warning: no file has loaded any rows yet, so the marts are empty" in \
        " ".join(proc.stderr.split())
    out = tmp_path / "episodes.csv"
    proc = run(home, "export", "episodes", "--out", str(out))
    assert proc.returncode == 4
    assert "holds no episode yet" in " ".join(proc.stderr.split())
    assert not out.exists() and not list(tmp_path.glob(".episodes*"))

    run(home, "ingest", str(good_file(tmp_path)))
    assert run(home, "aggregate", "--as-of", "2026-06-30").returncode == 0
    proc = run(home, "export", "episodes", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["file"] == str(out) and data["rows"] > 0
    assert out.read_text().count("\n") == data["rows"] + 1
