"""Intake: where a received file waits for ``ingest``, and how a run claims it exactly once.

A clinic drops a file in ``inbox/<clinic>/`` (or posts it to the batch endpoint). Once its
size is stable it is *moved* out of the inbox into its own folder::

    intake/pending/<clinic>/<token>/<original name>     waiting (token = time + hash)
    intake/claimed/<clinic>/<token>/...                 an ingest run owns it
    intake/done/<clinic>/<token>/...                    its batch is recorded

Every step is one ``os.rename`` of a folder, which is atomic: a file is never half-moved,
and when two runs race for the same file only one rename succeeds, so it loads once.
The original file name is kept because it says which delivery replaces which.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from tandem.settings import Settings

_CLINIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Names a writer uses before it renames the finished file into place.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")
META = ".meta.json"


class OrchestrationSettings(BaseSettings):
    """Timing of the served pipeline (env ``TANDEM_...``); defaults suit production."""

    model_config = SettingsConfigDict(env_prefix="TANDEM_", extra="ignore")

    # A file counts as complete once its size and mtime are unchanged this long.
    inbox_stable_seconds: float = 1.0
    # An ingest run keeps claiming newly received files of its clinic this long; events
    # inside the window start no new run (the trigger's `within`).
    ingest_window_seconds: float = 60.0
    # Same for aggregate: one run per window re-publishes while batches keep landing.
    aggregate_window_seconds: float = 60.0
    # Re-publish once no batch has landed for this long ...
    aggregate_quiet_seconds: float = 3.0
    # ... or at the latest this long after the previous publish, during a long burst.
    aggregate_max_wait_seconds: float = 120.0
    # Largest batch the endpoint accepts.
    api_max_bytes: int = 200 * 1024 * 1024
    # A file still waiting in intake/pending this long after its last event gets the
    # event again from the watcher (the event was lost: the Prefect server restarted, or
    # its run crashed and put the file back). Claims are atomic, so an extra event is
    # harmless; keep it above the ingest window.
    intake_retry_seconds: float = 120.0


def orchestration_settings() -> OrchestrationSettings:
    return OrchestrationSettings()


def intake_dir(settings: Settings, stage: str, clinic_id: str | None = None) -> Path:
    base = settings.home_dir / "intake" / stage
    return base / clinic_id if clinic_id else base


def valid_clinic_id(clinic_id: str) -> bool:
    return bool(_CLINIC.match(clinic_id or ""))


def safe_filename(name: str | None, default: str = "batch.csv") -> str:
    """A bare file name from untrusted input: no folders, no leading dot, tame characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = _UNSAFE.sub("_", base).lstrip("._")[:120]
    return base or default


def is_partial(path: Path) -> bool:
    """Still being written (by convention) or not meant for us."""
    name = path.name
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


@dataclass(frozen=True)
class Landed:
    """A file in intake: where it is now, and what the event says about it."""

    clinic_id: str
    token: str
    path: Path
    source_name: str
    sha256: str
    size_bytes: int
    trigger: str


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


_TOKEN_TIME = "%Y%m%dT%H%M%S%f"


def _token(sha256: str) -> str:
    return dt.datetime.now(dt.UTC).strftime(_TOKEN_TIME) + "-" + sha256[:12]


def received_at(landed: Landed) -> float:
    """When the file was received (from its token), as a Unix time; 0 if unknown."""
    try:
        stamp = dt.datetime.strptime(landed.token.split("-", 1)[0], _TOKEN_TIME)
    except ValueError:
        return 0.0
    return stamp.replace(tzinfo=dt.UTC).timestamp()


def receive_file(settings: Settings, clinic_id: str, src: Path, trigger: str) -> Landed:
    """Move a complete file from the inbox into intake (atomic; the inbox is then empty)."""

    def put(target: Path) -> None:
        try:
            os.rename(src, target)
        except OSError:  # another file system: copy, then remove the original
            shutil.copyfile(src, target)
            src.unlink()

    sha, size = _sha256(src)
    return _land(settings, clinic_id, src.name, sha, size, trigger, put)


def receive_bytes(settings: Settings, clinic_id: str, name: str | None, data: bytes,
                  trigger: str) -> Landed:
    """Store posted bytes in intake, atomically (nothing is visible until complete)."""

    def put(target: Path) -> None:
        with target.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return _land(settings, clinic_id, name, hashlib.sha256(data).hexdigest(), len(data),
                 trigger, put)


def _land(settings: Settings, clinic_id: str, name: str | None, sha: str, size: int,
          trigger: str, put: Callable[[Path], None]) -> Landed:
    """Into ``pending/<clinic>/<token>/``: ``put`` writes the file into a hidden staging
    folder with its metadata, which is then renamed into place (all or nothing)."""
    if not valid_clinic_id(clinic_id):
        raise ValueError(f"not a clinic id: {clinic_id!r}")
    fname = safe_filename(name)
    token = _token(sha)
    pending = intake_dir(settings, "pending", clinic_id)
    pending.mkdir(parents=True, exist_ok=True)
    staging = pending / f".{token}.tmp"
    staging.mkdir()
    try:
        put(staging / fname)
        _write_meta(staging, trigger, sha, size, fname)
        os.rename(staging, pending / token)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Landed(clinic_id, token, pending / token / fname, fname, sha, size, trigger)


def _write_meta(folder: Path, trigger: str, sha: str, size: int, name: str) -> None:
    (folder / META).write_text(json.dumps({
        "trigger": trigger, "sha256": sha, "size_bytes": size, "source_name": name,
        "received_at": dt.datetime.now(dt.UTC).isoformat(),
    }), encoding="utf-8")


def _read(folder: Path, clinic_id: str) -> Landed | None:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        files = [p for p in folder.iterdir() if p.is_file() and p.name != META]
        if len(files) != 1:
            return None
        meta = {"trigger": "sweep", "sha256": "", "size_bytes": files[0].stat().st_size,
                "source_name": files[0].name}
    return Landed(clinic_id, folder.name, folder / meta["source_name"], meta["source_name"],
                  meta["sha256"], int(meta["size_bytes"]), meta.get("trigger", "inbox"))


def pending(settings: Settings, clinic_id: str, stage: str = "pending") -> list[Landed]:
    """Files waiting in one stage for one clinic, oldest first."""
    base = intake_dir(settings, stage, clinic_id)
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(base.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            landed = _read(folder, clinic_id)
            if landed is not None:
                out.append(landed)
    return out


def clinics_in(settings: Settings, stage: str) -> list[str]:
    base = intake_dir(settings, stage)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and valid_clinic_id(p.name))


def claim(settings: Settings, landed: Landed, from_stage: str = "pending") -> Landed | None:
    """Take a file for this run. None if another run took it first."""
    src = intake_dir(settings, from_stage, landed.clinic_id) / landed.token
    dst_dir = intake_dir(settings, "claimed", landed.clinic_id)
    dst_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst_dir / landed.token)
    except FileNotFoundError:
        return None
    return Landed(landed.clinic_id, landed.token, dst_dir / landed.token / landed.source_name,
                  landed.source_name, landed.sha256, landed.size_bytes, landed.trigger)


def release_claims(settings: Settings) -> list[Landed]:
    """Put every claimed file back in pending: only when no ingest run can be alive.

    ``tandem serve`` calls this before it starts the runner, after an unclean stop (a
    flow run killed before it could finish or unclaim its files). A file whose batch was
    already committed then loads as ``duplicate_file``, which changes nothing.
    """
    released = []
    for clinic in clinics_in(settings, "claimed"):
        for landed in pending(settings, clinic, "claimed"):
            dst = intake_dir(settings, "pending", clinic)
            dst.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(intake_dir(settings, "claimed", clinic) / landed.token,
                          dst / landed.token)
            except OSError:
                continue
            released.append(landed)
    return released


def finish(settings: Settings, landed: Landed) -> Path:
    """Its batch is recorded: keep the file (with its name) in done/ for re-runs and audit."""
    src = intake_dir(settings, "claimed", landed.clinic_id) / landed.token
    dst_dir = intake_dir(settings, "done", landed.clinic_id)
    dst_dir.mkdir(parents=True, exist_ok=True)
    os.rename(src, dst_dir / landed.token)
    return dst_dir / landed.token / landed.source_name
