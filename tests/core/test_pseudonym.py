"""Keyed pseudonyms (DOMAIN.md, Privacy)."""

from __future__ import annotations

import hashlib
import hmac

from tandem.core.pseudonym import load_key, pseudonym
from tandem.core.settings import Settings


def test_same_client_same_clinic_same_pseudonym():
    key = b"k"
    assert pseudonym(key, "northside", "C1") == pseudonym(key, "northside", "C1")


def test_is_the_hmac_sha256_of_clinic_and_client():
    expected = hmac.new(b"k", b"northside\x1fC1", hashlib.sha256).hexdigest()[:32]
    assert pseudonym(b"k", "northside", "C1") == expected


def test_another_key_or_clinic_gives_unlinkable_pseudonyms():
    assert pseudonym(b"k1", "northside", "C1") != pseudonym(b"k2", "northside", "C1")
    assert pseudonym(b"k1", "northside", "C1") != pseudonym(b"k1", "southside", "C1")


def test_separator_prevents_ambiguous_concatenation():
    assert pseudonym(b"k", "ab", "c") != pseudonym(b"k", "a", "bc")


def test_embedded_default_makes_a_key_once_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.delenv("TANDEM_PSEUDONYM_KEY", raising=False)
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    first = load_key(Settings())
    second = load_key(Settings())
    assert first == second and len(first) == 64
    key_file = tmp_path / "secrets" / "pseudonym.key"
    assert key_file.stat().st_mode & 0o077 == 0  # readable by its owner only


def test_configured_key_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    monkeypatch.setenv("TANDEM_PSEUDONYM_KEY", "from-the-secrets-manager")
    assert load_key(Settings()) == b"from-the-secrets-manager"
    assert not (tmp_path / "secrets" / "pseudonym.key").exists()


def test_a_warehouse_refuses_another_key(tandem_home):
    import pytest

    from tandem.core import warehouse
    from tandem.core.pseudonym import PseudonymKeyMismatch, check_key, key_fingerprint

    with warehouse.writer(tandem_home) as con:
        check_key(con, b"first key")  # first load records the fingerprint
        check_key(con, b"first key")  # same key: fine
        with pytest.raises(PseudonymKeyMismatch, match="not the one this warehouse"):
            check_key(con, b"another key")
        stored = con.execute(
            "SELECT value FROM schema_info WHERE key = 'pseudonym_key_fingerprint'"
        ).fetchone()[0]
    assert stored == key_fingerprint(b"first key") and b"first key".hex() not in stored
