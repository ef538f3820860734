"""Received files: content hashes, the kept copy, and which delivery replaces which.

A clinic may re-send a corrected file. Its name says so: ``X_corrected.csv`` (or
``X_corrected2``, ``X_v2``, ``X_resend``) replaces what ``X.csv`` loaded. The newest
version wins whatever order the files arrive in, so a re-run in any order gives the
same warehouse.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tandem.core.safe_files import read_regular

_VERSION = re.compile(
    r"^(?P<base>.+?)[_\- ](?:(?P<corr>corrected|correction|resend|resent)(?P<n>\d*)|v(?P<v>\d+))$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Received:
    path: Path
    source_name: str
    data: bytes
    sha256: str
    size_bytes: int


def sha256_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in 1 MiB blocks (never whole in memory)."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def receive(path: Path) -> Received:
    """The bytes of a delivered file, hashed. Only a regular file is read: a symbolic link,
    a named pipe or a device raises :class:`tandem.core.safe_files.FileRefused` (a link is
    not followed, a pipe does not block)."""
    data = read_regular(path)
    # A file name need not be UTF-8 (a clinic's Latin-1 file system): keep it readable.
    name = os.fsencode(path.name).decode("utf-8", "replace")
    return Received(path, name, data, hashlib.sha256(data).hexdigest(), len(data))


def keep_copy(received: Received, directory: Path) -> Path:
    """Keep the bytes by content hash (for re-runs and audit), written atomically.

    The bytes written are the ones hashed (never the path read again, which may have
    changed or become a link since), readable by the service user only. A copy already
    kept has its modification time renewed: the retention period
    (``TANDEM_RECEIVED_RETENTION_DAYS``) counts from the last time the bytes arrived."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    suffix = "".join(received.path.suffixes[-2:]) if received.path.suffixes else ""
    suffix = re.sub(r"[^A-Za-z0-9.]", "", suffix)[:16]
    target = directory / f"{received.sha256}{suffix}"
    if target.exists():
        os.utime(target)
        return target
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(received.data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


@lru_cache(maxsize=65536)
def version_key(source_name: str) -> tuple[str, int]:
    """(series, version): files of one series replace each other, higher version wins.

    Cached: every load compares its name with each loaded file of its clinic."""
    name = Path(source_name).name
    stem, dot, ext = name.partition(".")
    m = _VERSION.match(stem)
    if not m:
        return name.lower(), 0
    base = f"{m.group('base')}{dot}{ext}".lower()
    if m.group("v"):
        return base, int(m.group("v"))
    return base, int(m.group("n")) if m.group("n") else 1
