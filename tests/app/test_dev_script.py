"""``dev.py`` finds every supported Python (3.11 to 3.13), prefers the newest, and refuses
clearly what it cannot use (issue 18, item 0). The install itself is what CI runs
(.ci/run: the whole suite on the newest, install plus a core subset on the others)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

DEV = str(REPO_ROOT / "dev.py")


def dev(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run([python, DEV, *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)


def test_it_lists_the_supported_pythons_newest_first():
    proc = dev("pythons")
    assert proc.returncode == 0, proc.stderr
    found = [line.split("\t") for line in proc.stdout.splitlines()]
    versions = [tuple(int(p) for p in v.split(".")) for v, _ in found]
    assert versions and versions == sorted(versions, reverse=True)
    assert set(versions) <= {(3, 11), (3, 12), (3, 13)}
    assert (sys.version_info.major, sys.version_info.minor) in versions  # the one running us
    for version, path in found:  # each really is that version
        probe = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip() == version


def test_the_project_allows_every_supported_python():
    import tomllib

    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert meta["project"]["requires-python"] == ">=3.11,<3.14"


@pytest.mark.parametrize(("args", "message"), [
    (["--python", "3.9", "test"], "Python 3.9 was not found on this machine"),
    (["--python", "three", "test"], "--python takes a version such as 3.12, or a path"),
    (["--python"], "--python needs a version"),
    (["frobnicate"], "unknown command 'frobnicate'"),
])
def test_it_refuses_what_it_cannot_use_in_a_sentence(args, message):
    proc = dev(*args)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_it_runs_under_an_unsupported_python_and_still_finds_a_supported_one():
    """The README's commands must work when python3 is, say, 3.10: dev.py itself runs on it
    and picks a supported interpreter for .venv."""
    import glob
    import os

    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    old = next(iter(sorted(glob.glob(f"{pyenv}/versions/3.10.*/bin/python3"))), None)
    if old is None:
        pytest.skip("no Python 3.10 on this machine to run dev.py with")
    proc = dev("pythons", python=old)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr
