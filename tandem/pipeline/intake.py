"""Intake: where a received file waits for ``ingest``, and how a run claims it exactly once.

A clinic drops a file in ``inbox/<clinic>/`` (or posts it to the batch endpoint). Once its
size is stable it is *moved* out of the inbox into its own folder::

    intake/pending/<clinic>/<token>/<original name>     waiting (token = time + hash)
    intake/claimed/<clinic>/<token>/...                 an ingest run owns it
    intake/done/<clinic>/<token>/...                    its batch is recorded
    intake/refused/<clinic>/<token>/...                 not a regular file: never read

Every step is one ``os.rename`` of a folder, which is atomic: a file is never half-moved,
and when two runs race for the same file only one rename succeeds, so it loads once.
The original file name is kept because it says which delivery replaces which.

Only regular files are taken from an inbox. A symbolic link (``passwd.csv -> /etc/passwd``),
a named pipe, a device or a socket is never opened: it is moved, as the entry it is, to
``intake/refused/`` with its reason (so it stops being looked at, and an operator sees it).
Kept files in ``done/`` are deleted after ``TANDEM_RECEIVED_RETENTION_DAYS``
(tandem.pipeline.retention).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tandem.core.safe_files import FileRefused, kind_reason, open_regular
from tandem.core.settings import Settings

_CLINIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# Names a writer uses before it renames the finished file into place.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")
META = ".meta.json"
# Beside a claimed file: which flow run claimed it.
OWNER = ".owner.json"


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


@dataclass(frozen=True)
class InboxEntry:
    """A candidate in an inbox folder: a regular file (``refused`` None) or not."""

    path: Path
    size: int
    mtime_ns: int
    refused: str | None = None


def inbox_entries(folder: Path) -> list[InboxEntry]:
    """The entries of one clinic's inbox folder, without following links, in name order.

    Hidden and partial names are left alone (still being written); sub-folders too.
    Every other entry that is not a regular file comes back with ``refused`` set."""
    out = []
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for e in entries:
        path = folder / e.name
        if is_partial(path):
            continue
        try:
            st = e.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        why = kind_reason(st.st_mode)
        if why == "is a folder, not a file":
            continue
        out.append(InboxEntry(path, st.st_size, st.st_mtime_ns, why))
    return out


def refuse_entry(settings: Settings, clinic_id: str, path: Path, reason: str) -> Path | None:
    """Move an inbox entry that is not a regular file (the entry itself: a link is moved,
    not followed) to ``intake/refused/<clinic>/<token>/`` beside a note of the reason.
    Returns where it went; None if it could not be moved (it vanished, or another file
    system)."""
    if not valid_clinic_id(clinic_id):
        raise ValueError(f"not a clinic id: {clinic_id!r}")
    token = _token(hashlib.sha256(os.fsencode(path.name)).hexdigest())
    folder = intake_dir(settings, "refused", clinic_id) / token
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_filename(path.name, "entry")
    try:
        os.rename(path, target)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    (folder / META).write_text(json.dumps({
        "reason": reason, "source_name": target.name,
        "refused_at": dt.datetime.now(dt.UTC).isoformat(),
    }), encoding="utf-8")
    return target


def refusal_left_in_inbox(path: Path) -> bool:
    """Whether ``path`` is still there and not a regular file (to be moved to refused/)."""
    try:
        return kind_reason(os.lstat(path).st_mode) is not None
    except OSError:
        return False


def receive_file(settings: Settings, clinic_id: str, src: Path, trigger: str) -> Landed:
    """Move a complete file from the inbox into intake (atomic; the inbox is then empty).

    Only a regular file is received: :class:`FileRefused` for a link or a special file
    (never opened: ``O_NOFOLLOW | O_NONBLOCK``). The file hashed is the file moved: if the
    entry was swapped between the two, the swapped-in entry is moved to ``refused/``."""
    fd, st = open_regular(src)
    try:
        h = hashlib.sha256()
        size = 0
        with os.fdopen(os.dup(fd), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
                size += len(block)

        def put(target: Path) -> None:
            try:
                os.rename(src, target)
            except OSError:  # another file system: copy what was hashed, then remove it
                with os.fdopen(os.dup(fd), "rb") as fh, open(target, "wb") as out:
                    fh.seek(0)
                    shutil.copyfileobj(fh, out)
                src.unlink()
                return
            moved = os.lstat(target)
            if (moved.st_dev, moved.st_ino) != (st.st_dev, st.st_ino):
                raise FileRefused(src, "was replaced while it was being received")

        return _land(settings, clinic_id, src.name, h.hexdigest(), size, trigger, put)
    finally:
        os.close(fd)


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
    except FileRefused as exc:
        # what arrived in the file's place is kept, unread, beside the other refusals
        refused = intake_dir(settings, "refused", clinic_id)
        refused.mkdir(parents=True, exist_ok=True)
        (staging / META).write_text(json.dumps({"reason": exc.reason, "source_name": fname}),
                                    encoding="utf-8")
        os.rename(staging, refused / token)
        raise
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
        files = [p for p in folder.iterdir() if p.is_file() and p.name not in (META, OWNER)]
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


def claim(settings: Settings, landed: Landed, from_stage: str = "pending",
          owner: str | None = None) -> Landed | None:
    """Take a file for this run. None if another run took it first. ``owner`` (the flow run
    id) is recorded with the claim, so a claim whose run ended without finishing it can be
    given back (:func:`stranded_claims`)."""
    src = intake_dir(settings, from_stage, landed.clinic_id) / landed.token
    dst_dir = intake_dir(settings, "claimed", landed.clinic_id)
    dst_dir.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst_dir / landed.token)
    except FileNotFoundError:
        return None
    if owner:
        (dst_dir / landed.token / OWNER).write_text(
            json.dumps({"flow_run_id": owner, "claimed_at": time.time()}), encoding="utf-8")
    return Landed(landed.clinic_id, landed.token, dst_dir / landed.token / landed.source_name,
                  landed.source_name, landed.sha256, landed.size_bytes, landed.trigger)


def claim_owner(landed: Landed) -> str | None:
    """The flow run that claimed this file (None: claimed by an older Tandem, or by hand)."""
    try:
        return json.loads((landed.path.parent / OWNER).read_text(encoding="utf-8"))[
            "flow_run_id"]
    except (OSError, ValueError, KeyError):
        return None


def stranded_claims(settings: Settings, finished: Callable[[str], bool]) -> list[Landed]:
    """Give back to pending every claimed file whose owning flow run has ended (crashed,
    failed, cancelled, or completed without finishing it): ``finished(flow_run_id)`` says.
    Re-loading a file whose batch was committed is a harmless ``duplicate_file``."""
    released = []
    for clinic in clinics_in(settings, "claimed"):
        for landed in pending(settings, clinic, "claimed"):
            owner = claim_owner(landed)
            if owner and finished(owner):
                unclaim(settings, landed)
                released.append(landed)
    return released


def unclaim(settings: Settings, landed: Landed) -> None:
    """Give a claimed file back to pending (its run failed before the batch was recorded)."""
    src = intake_dir(settings, "claimed", landed.clinic_id) / landed.token
    dst = intake_dir(settings, "pending", landed.clinic_id) / landed.token
    with contextlib.suppress(OSError):
        src.rename(dst)


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
