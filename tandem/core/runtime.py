"""The process environment Tandem's libraries read, set in one place.

Prefect and Great Expectations take their configuration from environment variables read
at import time, so these defaults must be in place before either is imported: every entry
point calls :func:`prepare_environment` first. Values already set by the operator win.

It also makes everything Tandem writes private to the service user: the process umask
becomes 077 (new folders 0700, new files 0600: the warehouse, kept raw files, reports,
Prefect's database), inherited by every child (the Prefect server, the dashboard), and
what an older version left readable to others (``received/``, ``intake/``, the warehouse
files) is tightened once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tandem.core.settings import Settings, get_settings


def library_defaults(settings: Settings) -> dict[str, str]:
    """Environment defaults for Prefect and GX: state under TANDEM_HOME, no analytics."""
    return {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Without a Prefect server configured (PREFECT_API_URL), flows start a temporary
        # one; give it time on a busy machine (Prefect's default is 20 s).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "GX_ANALYTICS_ENABLED": "false",
    }


# Owner only: new files 0600, new folders 0700.
PRIVATE_UMASK = 0o077


def prepare_environment(settings: Settings | None = None) -> Settings:
    """Make TANDEM_HOME's folders private, set the umask and the library defaults (before
    Prefect or GX load)."""
    settings = settings or get_settings()
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)  # never looser than the operator's
    settings.ensure_dirs()
    make_private(settings)
    for name, value in library_defaults(settings).items():
        os.environ.setdefault(name, value)
    return settings


def make_private(settings: Settings) -> list[Path]:
    """Take group and other permissions off what holds raw or row-level data.

    ``received/`` and ``intake/`` (raw client files: walked once, only while their top
    folder is still open to others), the embedded lake's folder and catalog, ``secrets/``,
    ``audit/`` and the users file. The inbox is left as the operator set it (a clinic's
    upload account may need it). Returns what was changed."""
    home = settings.home_dir
    changed: list[Path] = []

    def tighten(path: Path) -> None:
        try:
            st = os.lstat(path)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077 or st.st_uid != os.getuid():
            return
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        changed.append(path)

    for name in ("received", "intake"):
        top = home / name
        try:
            if not os.lstat(top).st_mode & 0o077:
                continue  # already private: what is below is not reachable by others
        except OSError:
            continue
        for folder, dirs, files in os.walk(top):
            for entry in (*dirs, *files):
                tighten(Path(folder) / entry)
        tighten(top)
    lake = settings.lake_dir
    for path in (lake, lake / "catalog.sqlite", lake / "catalog.sqlite-wal",
                 settings.secrets_dir, settings.audit_dir, home / "users.yaml"):
        tighten(path)
    return changed
