"""DuckDB's extensions for the lake: ``ducklake``, ``sqlite_scanner``, ``postgres_scanner`` and
``httpfs`` (DuckLake's encryption and object storage need it).

DuckDB downloads extensions from its own repository; where that is unreachable they come from
the package registry as ``duckdb-extension-<name>`` (DuckDB's signed binaries, pinned with
DuckDB in ``constraints.txt``). Either way they are *installed* into one extension directory
(``TANDEM_EXTENSION_DIR``), once per DuckDB version, so that DuckDB autoloads them when a
lake is attached, and DuckDB's signature check stays on: unsigned extensions are never
allowed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import duckdb

# DuckDB's name of each extension -> the suffix of its registry package (and its file name).
EXTENSIONS = {"ducklake": "ducklake", "sqlite_scanner": "sqlite",
              "postgres_scanner": "postgres", "httpfs": "httpfs"}
# Seconds a download from DuckDB's repository may take before the registry package is used
# (on a network that swallows connections DuckDB would otherwise wait two minutes).
REPOSITORY_TIMEOUT = 2


class ExtensionError(RuntimeError):
    """An extension could not be installed from the repository or its registry package."""


def package_file(name: str) -> Path:
    """The extension file shipped by ``duckdb-extension-<suffix>`` for this DuckDB version."""
    suffix = EXTENSIONS[name]
    spec = find_spec(f"duckdb_extension_{suffix}")
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            f"the DuckDB extension {name} is not installed: "
            f"pip install duckdb-extension-{suffix}=={duckdb.__version__}")
    base = Path(next(iter(spec.submodule_search_locations)))
    path = base / "extensions" / f"v{duckdb.__version__}" / f"{suffix}.duckdb_extension"
    if not path.is_file():
        raise ExtensionError(f"duckdb-extension-{suffix} has no build for DuckDB "
                             f"{duckdb.__version__} ({path} is missing)")
    return path


def _installed(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT extension_name FROM duckdb_extensions() WHERE installed").fetchall()}


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Only one process installs into a directory at a time (the first start of several)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def ensure_installed(directory: Path, try_repository: bool = True) -> dict[str, str]:
    """Install every extension the lake needs into ``directory`` (skipping those already there).

    DuckDB's repository is tried first when ``try_repository`` (with a short timeout: httpfs,
    which the download itself needs, comes from its package first); on any failure the
    registry package's file is installed instead. Returns where each new one came from."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = directory / f".installed-{duckdb.__version__}"
    if stamp.exists():
        return {}
    done: dict[str, str] = {}
    with _exclusive(directory / ".install.lock"):
        if stamp.exists():
            return {}
        con = duckdb.connect(config={"extension_directory": str(directory)})
        try:
            present = _installed(con)
            if "httpfs" not in present:
                con.execute(f"INSTALL '{package_file('httpfs')}'")
                done["httpfs"] = "package"
            if try_repository:
                con.execute("LOAD httpfs")
                con.execute(f"SET http_timeout = {REPOSITORY_TIMEOUT}")
                con.execute("SET http_retries = 0")
            for name in EXTENSIONS:
                if name in present or name in done:
                    continue
                if try_repository:
                    try:
                        con.execute(f"INSTALL {name}")
                        done[name] = "repository"
                        continue
                    except duckdb.Error:
                        pass  # unreachable or refused: the registry package below
                con.execute(f"INSTALL '{package_file(name)}'")
                done[name] = "package"
            missing = set(EXTENSIONS) - _installed(con)
            if missing:
                raise ExtensionError(f"could not install {', '.join(sorted(missing))}")
        finally:
            con.close()
        stamp.write_text(", ".join(f"{k}: {v}" for k, v in done.items()) or "present")
    return done


def connect(directory: Path, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that autoloads the lake's extensions from ``directory``."""
    ensure_installed(directory)
    return duckdb.connect(database, config={"extension_directory": str(directory)})
