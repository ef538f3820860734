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

from tandem.settings import Settings, get_settings

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
