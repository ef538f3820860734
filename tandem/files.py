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
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


def receive(path: Path) -> Received:
    data = path.read_bytes()
    # A file name need not be UTF-8 (a clinic's Latin-1 file system): keep it readable.
    name = os.fsencode(path.name).decode("utf-8", "replace")
    return Received(path, name, data, hashlib.sha256(data).hexdigest(), len(data))


def keep_copy(received: Received, directory: Path) -> Path:
    """Keep the bytes by content hash (for re-runs and audit), written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = "".join(received.path.suffixes[-2:]) if received.path.suffixes else ""
    suffix = re.sub(r"[^A-Za-z0-9.]", "", suffix)[:16]
    target = directory / f"{received.sha256}{suffix}"
    if not target.exists():
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        try:
            shutil.copyfile(received.path, tmp)
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
