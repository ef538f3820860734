"""Sign-in and roles for the dashboard.

Embedded default: users live in ``TANDEM_HOME/users.yaml`` with bcrypt password hashes (never
plain passwords). Roles:

- ``director``: aggregates only, for the clinics listed on the user (``clinics: ["*"]`` = all);
- ``quality``: row-level data (episodes, quarantine, lineage) for their clinics;
- ``admin``: everything, including the list of users.

OIDC: when ``.streamlit/secrets.toml`` has an ``[auth]`` section, a "Sign in with SSO" button
calls ``st.login()``; the identity provider's e-mail is then looked up in ``users.yaml`` (an
entry with ``email:`` and no password) to find the role and clinics. See docs/dashboard.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml

from tandem.settings import Settings

ROLES = ("director", "quality", "admin")
ALL_CLINICS = "*"
# Checked when the user is unknown: a wrong name costs the same time as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"tandem-dummy", bcrypt.gensalt(rounds=12)).decode()


@dataclass(frozen=True)
class User:
    """A signed-in user; ``clinics`` None means every clinic."""

    username: str
    role: str
    name: str = ""
    clinics: tuple[str, ...] | None = None
    email: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def row_level(self) -> bool:
        """May see row-level data (episodes, quarantined rows, lineage)."""
        return self.role in ("quality", "admin")

    @property
    def all_clinics(self) -> bool:
        return self.clinics is None

    def may_see(self, clinic_id: str | None) -> bool:
        """A clinic's figures; None (= all clinics combined) only for users who see all."""
        if self.clinics is None:
            return True
        return clinic_id is not None and clinic_id in self.clinics


def users_path(settings: Settings) -> Path:
    return settings.home_dir / "users.yaml"


def load_users(settings: Settings) -> dict[str, dict]:
    path = users_path(settings)
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return dict(data.get("users") or {})


def save_users(settings: Settings, users: dict[str, dict]) -> None:
    """Write the users file atomically, readable by its owner only."""
    path = users_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump({"users": users}, f, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode()


def add_user(settings: Settings, username: str, password: str | None, role: str,
             clinics: list[str] | None = None, name: str = "", email: str | None = None) -> None:
    """Add or replace a user. ``password`` None makes an SSO-only user (needs ``email``)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if password is None and not email:
        raise ValueError("a user without a password needs an e-mail for SSO")
    users = load_users(settings)
    entry: dict = {"role": role, "name": name or username,
                   "clinics": clinics or [ALL_CLINICS]}
    if password is not None:
        entry["password_hash"] = hash_password(password)
    if email:
        entry["email"] = email.lower()
    users[username] = entry
    save_users(settings, users)


def _user(username: str, entry: dict) -> User:
    clinics = entry.get("clinics") or [ALL_CLINICS]
    return User(
        username=username,
        role=entry.get("role", "director"),
        name=entry.get("name") or username,
        clinics=None if ALL_CLINICS in clinics else tuple(clinics),
        email=entry.get("email"),
    )


def authenticate(settings: Settings, username: str, password: str) -> User | None:
    """The user if the password matches its bcrypt hash, else None."""
    entry = load_users(settings).get(username.strip())
    stored = (entry or {}).get("password_hash") or _DUMMY_HASH
    ok = bcrypt.checkpw(password.encode("utf-8"), stored.encode("utf-8"))
    if not ok or entry is None or not entry.get("password_hash"):
        return None
    if entry.get("role") not in ROLES:
        return None
    return _user(username.strip(), entry)


def user_for_email(settings: Settings, email: str) -> User | None:
    """The users-file entry for an SSO identity (matched by e-mail), if any."""
    email = email.lower()
    for username, entry in load_users(settings).items():
        if (entry.get("email") or "").lower() == email and entry.get("role") in ROLES:
            return _user(username, entry)
    return None


DEMO_USERS = {
    "director": ("director", ["northside"], "Demo director (Northside)"),
    "quality": ("quality", [ALL_CLINICS], "Demo quality team"),
    "admin": ("admin", [ALL_CLINICS], "Demo administrator"),
}


def ensure_demo_users(settings: Settings, clinics: list[str] | None = None) -> dict[str, str]:
    """Create the demo users that do not exist yet, with random passwords.

    Returns ``{username: password}`` for the users created now (print it once; only the
    bcrypt hashes are stored). The director sees ``clinics[0]``; by default the first clinic
    of the published snapshot (else ``northside``)."""
    existing = load_users(settings)
    clinics = clinics or _published_clinics(settings)
    created: dict[str, str] = {}
    for username, (role, user_clinics, name) in DEMO_USERS.items():
        if username in existing:
            continue
        if role == "director" and clinics:
            user_clinics = clinics[:1]
        password = secrets.token_urlsafe(12)
        add_user(settings, username, password, role, user_clinics, name)
        created[username] = password
    return created


def _published_clinics(settings: Settings) -> list[str]:
    """Clinic ids in the current snapshot's outcomes (empty before the first publish)."""

    from tandem import publish

    snap = publish.current(settings)
    if snap is None or "dir_outcomes" not in snap.tables:
        return []
    rows = publish.query_snapshot(snap, "SELECT DISTINCT clinic_id FROM dir_outcomes "
                                        "WHERE clinic_id IS NOT NULL ORDER BY 1")
    return [r[0] for r in rows]


def audit(settings: Settings, user: User | None, action: str, **details: object) -> None:
    """Append who viewed or downloaded row-level data to ``TANDEM_HOME/audit/access.jsonl``."""
    folder = settings.home_dir / "audit"
    folder.mkdir(parents=True, exist_ok=True)
    record = {"at": dt.datetime.now(dt.UTC).isoformat(), "user": user.username if user else None,
              "role": user.role if user else None, "action": action, **details}
    with open(folder / "access.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")
