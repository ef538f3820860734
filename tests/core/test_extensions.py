"""The lake's DuckDB extensions come from the registry packages when DuckDB's repository is
out of reach, installed once, with DuckDB's signature check on."""

from __future__ import annotations

import duckdb

from tandem.core import extensions


def test_installed_from_the_packages_once_and_loaded_signed(tmp_path):
    target = tmp_path / "ext"
    first = extensions.ensure_installed(target, try_repository=False)
    assert set(first) == set(extensions.EXTENSIONS)
    assert set(first.values()) == {"package"}
    assert extensions.ensure_installed(target) == {}  # once per DuckDB version
    con = extensions.connect(target)
    try:
        assert con.execute("SELECT current_setting('allow_unsigned_extensions')"
                           ).fetchone()[0] is False
        installed = {r[0] for r in con.execute(
            "SELECT extension_name FROM duckdb_extensions() WHERE installed").fetchall()}
        assert set(extensions.EXTENSIONS) <= installed
        con.execute("LOAD ducklake")  # a signed binary: loads with the check on
        con.execute("LOAD sqlite_scanner")
    finally:
        con.close()


def test_the_repository_is_tried_first_and_the_packages_are_the_fallback(tmp_path):
    """Wherever DuckDB's repository is unreachable (here, CI) the packages serve; either
    way every extension ends up installed."""
    done = extensions.ensure_installed(tmp_path / "ext", try_repository=True)
    assert set(done) == set(extensions.EXTENSIONS)
    assert set(done.values()) <= {"repository", "package"}
    assert done["httpfs"] == "package"  # the download itself needs it first


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(extensions, "find_spec", lambda name: None)
    try:
        extensions.package_file("ducklake")
    except extensions.ExtensionError as exc:
        assert f"duckdb-extension-ducklake=={duckdb.__version__}" in str(exc)
    else:
        raise AssertionError("no error for a missing package")
