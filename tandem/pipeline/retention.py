"""Retention of raw files: kept copies are deleted after ``TANDEM_RECEIVED_RETENTION_DAYS``.

Every received file is kept as it arrived (``received/<clinic>/<sha256>.<ext>``, and the
delivered file with its name in ``intake/done/`` or ``intake/refused/``) for re-runs and
audit. Those bytes hold raw client ids, so they are not kept for ever: :func:`purge_received`
deletes every kept file whose bytes last arrived more than the retention period ago (a
kept copy's modification time is renewed each time the same bytes arrive again; an
intake folder's age is its receipt time). The nightly sweep runs it, and ``tandem purge``
runs it by hand.

What exactly-once and lineage need stays: the batch records (content hash, file name,
stored path, outcome, counts) are never touched, so the same bytes arriving after the
purge are still recognised (``duplicate_file``) and every loaded row still names its
batch. After the purge, re-running a purged file needs the clinic to send it again, and
a failed file can no longer be retried by the sweep (it checks that the copy exists).

Each purge is audited in ``TANDEM_HOME/audit/retention.jsonl``: one summary record and one
record per deleted file (path under TANDEM_HOME, content hash, size, when its bytes last
arrived), under the same ``purge_id``. File names and hashes only: never contents.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tandem.core.safe_files import list_files
from tandem.core.settings import Settings
from tandem.pipeline import intake

_SHA = re.compile(r"^([0-9a-f]{64})")
AUDIT_FILE = "retention.jsonl"


@dataclass
class PurgeReport:
    """What a purge deleted (or, with ``dry_run``, would delete)."""

    purge_id: str
    retention_days: int
    cutoff: dt.datetime | None
    dry_run: bool
    deleted: list[dict] = field(default_factory=list)

    @property
    def files(self) -> int:
        return len(self.deleted)

    @property
    def bytes(self) -> int:
        return sum(d["size_bytes"] for d in self.deleted)

    def summary(self) -> dict:
        return {"purge_id": self.purge_id, "retention_days": self.retention_days,
                "cutoff": self.cutoff.isoformat() if self.cutoff else None,
                "dry_run": self.dry_run, "files": self.files, "bytes": self.bytes}


def purge_received(settings: Settings, *, days: int | None = None,
                   now: dt.datetime | None = None, dry_run: bool = False,
                   trigger: str = "cli") -> PurgeReport:
    """Delete kept raw files older than the retention period; audit what was deleted.

    ``days`` defaults to ``settings.received_retention_days``; 0 (or less) keeps
    everything. Files waiting to be ingested (``intake/pending``, ``intake/claimed``) and
    the inboxes are never touched. Links are never followed (and never deleted: only
    Tandem's own regular files are)."""
    days = settings.received_retention_days if days is None else days
    now = now or dt.datetime.now(dt.UTC)
    report = PurgeReport(uuid.uuid4().hex, days, None, dry_run)
    if days <= 0:
        return report
    cutoff = now - dt.timedelta(days=days)
    report.cutoff = cutoff
    limit = cutoff.timestamp()
    home = settings.home_dir
    if settings.received_dir.is_dir():
        for path in list_files(settings.received_dir, skip_hidden=False).files:
            st = os.lstat(path)
            if st.st_mtime >= limit:
                continue
            sha = _SHA.match(path.name)
            report.deleted.append(_entry(path, home, st, sha.group(1) if sha else None))
            if not dry_run:
                _unlink_if_unchanged(path, st)
    for stage in ("done", "refused"):
        base = intake.intake_dir(settings, stage)
        for clinic in intake.clinics_in(settings, stage):
            for folder in sorted((base / clinic).iterdir()):
                if folder.is_symlink() or not folder.is_dir():
                    continue
                arrived = _token_time(folder)
                if arrived >= limit:
                    continue
                meta = _meta(folder)
                for path in list_files(folder, skip_hidden=False).files:
                    if path.name == intake.META:
                        continue
                    entry = _entry(path, home, os.lstat(path), meta.get("sha256") or None)
                    entry["arrived_at"] = dt.datetime.fromtimestamp(arrived, dt.UTC).isoformat()
                    report.deleted.append(entry)
                if not dry_run:
                    shutil.rmtree(folder, ignore_errors=True)
    _audit(settings, report, trigger)
    return report


def _entry(path: Path, home: Path, st: os.stat_result, sha: str | None) -> dict:
    return {"path": str(path.relative_to(home)), "content_sha256": sha,
            "size_bytes": st.st_size,
            "arrived_at": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat()}


def _unlink_if_unchanged(path: Path, listed: os.stat_result) -> None:
    """Delete ``path`` unless its bytes arrived again since it was listed (a new mtime)."""
    try:
        st = os.lstat(path)
        if (st.st_ino, st.st_mtime_ns) == (listed.st_ino, listed.st_mtime_ns):
            path.unlink()
    except FileNotFoundError:
        pass


def _token_time(folder: Path) -> float:
    """When an intake folder's file was received: its token's time, else its mtime."""
    landed = intake.Landed("", folder.name, folder, "", "", 0, "")
    when = intake.received_at(landed)
    return when or folder.stat().st_mtime


def _meta(folder: Path) -> dict:
    try:
        return json.loads((folder / intake.META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _audit(settings: Settings, report: PurgeReport, trigger: str) -> None:
    """One summary line and one line per deleted file in audit/retention.jsonl."""
    folder = settings.audit_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    at = dt.datetime.now(dt.UTC).isoformat()
    lines = [json.dumps({"at": at, "action": "purge_received", "trigger": trigger,
                         **report.summary()})]
    lines += [json.dumps({"at": at, "action": "purged_file", "purge_id": report.purge_id,
                          "dry_run": report.dry_run, **d}) for d in report.deleted]
    fd = os.open(folder / AUDIT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
