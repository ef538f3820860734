"""Keyed client pseudonyms (DOMAIN.md, Privacy).

The warehouse stores HMAC-SHA256(key, clinic_id + client_id), never the raw id. The same
client in two files of one clinic gets the same pseudonym; another key gives unlinkable
ones. The key comes from ``TANDEM_PSEUDONYM_KEY``; the embedded default makes a random
key once in ``TANDEM_HOME/secrets/`` (outside the warehouse) and keeps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable

from tandem.core.settings import Settings, get_settings

KEY_FILE = "pseudonym.key"
# 128 bits of the HMAC: collisions are negligible at any clinic-network scale.
PSEUDONYM_HEX_CHARS = 32
_SEPARATOR = "\x1f"  # unit separator: cannot occur in a clinic or client id


def load_key(settings: Settings | None = None) -> bytes:
    settings = settings or get_settings()
    if settings.pseudonym_key:
        return settings.pseudonym_key.encode("utf-8")
    path = settings.secrets_dir / KEY_FILE
    if not path.exists():
        settings.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.secrets_dir, 0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        with contextlib.suppress(FileExistsError):  # another process made it first: keep theirs
            os.link(tmp, path)
        tmp.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip().encode("utf-8")


def pseudonym(key: bytes, clinic_id: str, client_id: str) -> str:
    msg = f"{clinic_id}{_SEPARATOR}{client_id}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


def pseudonym_map(key: bytes, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Pseudonyms for the distinct (clinic, client) pairs of a batch (few, so a loop is fine)."""
    return {(c, k): pseudonym(key, c, k) for c, k in set(pairs)}


FINGERPRINT_KEY = "pseudonym_key_fingerprint"


class PseudonymKeyMismatch(RuntimeError):
    """The key differs from the one this warehouse's pseudonyms were made with."""


def key_fingerprint(key: bytes) -> str:
    """A one-way fingerprint of the key (it reveals nothing of the key itself)."""
    return hmac.new(key, b"tandem pseudonym key fingerprint", hashlib.sha256).hexdigest()[:16]


def check_key(con, key: bytes) -> None:  # noqa: ANN001 - a DuckDB connection
    """Refuse to load with another key than the warehouse was built with.

    A lost or changed key would silently give every client a new, unlinkable pseudonym
    (after a restore without the key, or a typo in TANDEM_PSEUDONYM_KEY). The first load
    records the key's fingerprint in ``schema_info``; later loads must match it. Rotating
    the key on purpose is a documented re-keying procedure (docs/operations.md).
    """
    fingerprint = key_fingerprint(key)
    # fetchall: DuckDB wants every result finished before the next registration
    rows = con.execute(
        "SELECT value FROM schema_info WHERE key = ?", [FINGERPRINT_KEY]
    ).fetchall()
    row = rows[0] if rows else None
    if row is None:
        con.execute("INSERT INTO schema_info VALUES (?, ?)",
                    [FINGERPRINT_KEY, fingerprint]).fetchall()
    elif row[0] != fingerprint:
        raise PseudonymKeyMismatch(
            "the pseudonym key is not the one this warehouse was built with, so the same "
            "client would get a new pseudonym: restore the key (tandem restore --include-key, "
            "or TANDEM_PSEUDONYM_KEY from your secrets manager) or follow the key rotation "
            "procedure in docs/operations.md"
        )
