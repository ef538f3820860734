#!/usr/bin/env python3
"""Set everything up, then run the demo or the tests. Needs only Python (3.11 to 3.13) and pip.

    python3 dev.py demo     # generate data, run the flows, start the dashboard on :8501
    python3 dev.py test     # the whole test suite (pytest arguments may follow)
    python3 dev.py tandem ARGS...   # any tandem command, in the project's environment
    python3 dev.py pythons  # the supported interpreters found on this machine, newest first

It makes ``.venv`` beside this file with the newest supported Python it finds (on the
PATH as python3.13, python3.12, python3.11 or python3, or installed by pyenv), whichever
Python runs this script, and installs the project pinned by ``constraints.txt``
(re-installing only when pyproject.toml or constraints.txt change). An existing
``.venv`` of a supported version is kept.

    python3 dev.py --python 3.12 test tests/core   # another interpreter

``--python VERSION`` (or a path to an interpreter) uses that Python instead: ``.venv`` if
it was made by that version, else an environment of its own in
``.venv/other-pythons/<version>``, so the main one stays as it is (CI uses this to check
the other supported versions). Everything stays under ``.venv``, which tools skip.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SUPPORTED = ((3, 13), (3, 12), (3, 11))  # newest first; pyproject.toml's requires-python
VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def _fingerprint(version: str) -> str:
    h = hashlib.sha256(version.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def _version_of(python: str) -> tuple[int, int] | None:
    """(major, minor) of an interpreter that runs, else None (e.g. a pyenv shim of a
    version that is installed but not selected)."""
    try:
        out = subprocess.run([python, "-c", VERSION_PROBE], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, _, minor = out.stdout.strip().partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return None


def _candidates() -> list[str]:
    """Interpreters to try: this one, those on the PATH, and pyenv's installed versions."""
    names = [sys.executable]
    for major, minor in SUPPORTED:
        names.append(f"python{major}.{minor}")
    names.append("python3")
    found = []
    for name in names:
        path = shutil.which(name) if os.sep not in name else name
        if path:
            found.append(path)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for major, minor in SUPPORTED:
        found += sorted(glob.glob(f"{pyenv_root}/versions/{major}.{minor}.*/bin/python3"),
                        reverse=True)
    return list(dict.fromkeys(found))


def supported_pythons() -> dict[tuple[int, int], str]:
    """The first working interpreter of each supported version, newest version first."""
    out: dict[tuple[int, int], str] = {}
    for path in _candidates():
        version = _version_of(path)
        if version in SUPPORTED and version not in out:
            out[version] = path
    return dict(sorted(out.items(), reverse=True))


def _wanted(spec: str) -> tuple[tuple[int, int], str]:
    """The interpreter ``--python`` names: a version ("3.12") or a path."""
    if os.sep in spec or spec.startswith("python"):
        path = shutil.which(spec) or spec
        version = _version_of(path)
        if version not in SUPPORTED:
            sys.exit(f"{spec} is not a supported Python (3.11, 3.12 or 3.13)")
        return version, path
    try:
        version = tuple(int(p) for p in spec.split("."))[:2]
    except ValueError:
        sys.exit(f"--python takes a version such as 3.12, or a path; not {spec!r}")
    found = supported_pythons()
    if version not in found:
        have = ", ".join(f"{v[0]}.{v[1]}" for v in found) or "none"
        sys.exit(f"Python {spec} was not found on this machine (supported ones found: {have})")
    return version, found[version]  # type: ignore[index]


def ensure_environment(python_spec: str | None) -> Path:
    """Make (or reuse) the virtual environment and install the pinned project into it."""
    main = ROOT / ".venv"
    main_python = main / "bin" / "python"
    existing = _version_of(str(main_python)) if main_python.exists() else None
    if python_spec:
        version, python = _wanted(python_spec)
        venv = main if existing == version else \
            main / "other-pythons" / f"{version[0]}.{version[1]}"
    else:
        venv = main
        if existing in SUPPORTED:
            version, python = existing, str(main_python)
        else:
            found = supported_pythons()
            if not found:
                sys.exit("Tandem needs Python 3.11, 3.12 or 3.13 with pip; none was found "
                         f"(this is {sys.version.split()[0]}). Install one and run this again.")
            version, python = next(iter(found.items()))
            if main_python.exists():
                print(".venv was made by an unsupported Python: making it again", flush=True)
                shutil.rmtree(venv)
    label = f"{version[0]}.{version[1]}"
    stamp = venv / ".tandem-install-stamp"
    where = venv.relative_to(ROOT)
    if not (venv / "bin" / "python").exists():
        print(f"creating {where} with Python {label} ({python}) ...", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    if stamp.exists() and stamp.read_text() == _fingerprint(label):
        return venv
    print(f"installing Tandem and its dependencies into {where} (Python {label}, pinned "
          "by constraints.txt) ...", flush=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run(
        [*pip, "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT
    )
    stamp.write_text(_fingerprint(label))
    return venv


def main(argv: list[str]) -> int:
    python_spec = None
    if argv and argv[0] == "--python":
        if len(argv) < 2:
            print("--python needs a version (3.11, 3.12, 3.13) or a path", file=sys.stderr)
            return 2
        python_spec, argv = argv[1], argv[2:]
    elif argv and argv[0].startswith("--python="):
        python_spec, argv = argv[0].split("=", 1)[1], argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "pythons":
        for (major, minor), path in supported_pythons().items():
            print(f"{major}.{minor}\t{path}")
        return 0
    if command not in ("demo", "test", "tandem"):
        print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
        return 2
    venv = ensure_environment(python_spec)
    bin_dir = venv / "bin"
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if command == "demo":
        args = [str(bin_dir / "tandem"), "demo", *rest]
    elif command == "test":
        args = [str(bin_dir / "python"), "-m", "pytest", *rest]
    else:
        args = [str(bin_dir / "tandem"), *rest]
    try:
        return subprocess.call(args, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
