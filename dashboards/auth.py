"""Sign-in and roles for the dashboard.

Embedded default: users live in ``TANDEM_HOME/users.yaml`` with bcrypt password hashes (never
plain passwords). Roles:

- ``director``: aggregates only, for the clinics listed on the user (``clinics: ["*"]`` = all);
- ``quality``: row-level data (episodes, quarantine, lineage) for their clinics;
- ``admin``: everything, including the list of users.

OIDC: when ``.streamlit/secrets.toml`` has an ``[auth]`` section, a "Sign in with SSO" button
calls ``st.login()``; the identity provider's e-mail is then looked up in ``users.yaml`` (an
entry with ``email:`` and no password) to find the role and clinics. See docs/dashboard.md.

Password sign-in is throttled per user name and per client address (:func:`sign_in`): after
a few failures each further attempt must wait a growing delay, and after more a temporary
lock-out holds even for the right password. Attempts refused that way are not checked at
all, and every failure, refusal and lock-out is audited in ``audit/access.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml
from filelock import FileLock

from tandem.core.settings import Settings

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


def user_by_name(settings: Settings, username: str) -> User | None:
    """The users-file entry for a user name (a restored session re-reads it: a removed
    user or a changed role takes effect at once)."""
    entry = load_users(settings).get(username)
    if entry is None or entry.get("role") not in ROLES:
        return None
    return _user(username, entry)


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

    from tandem.core import published

    snap = published.current(settings)
    if snap is None or "dir_outcomes" not in snap.tables:
        return []
    rows = published.query_snapshot(snap, "SELECT DISTINCT clinic_id FROM dir_outcomes "
                                        "WHERE clinic_id IS NOT NULL ORDER BY 1")
    return [r[0] for r in rows]


def audit(settings: Settings, user: User | None, action: str, **details: object) -> None:
    """Append who viewed or downloaded row-level data to ``TANDEM_HOME/audit/access.jsonl``."""
    folder = settings.audit_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = {"at": dt.datetime.now(dt.UTC).isoformat(), "user": user.username if user else None,
              "role": user.role if user else None, "action": action, **details}
    with open(folder / "access.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")


# --- sign-in throttling ------------------------------------------------------------------------

@dataclass(frozen=True)
class ThrottlePolicy:
    """How failed sign-ins under one key (a user name, or a client address) slow it down.

    After ``free`` failures each attempt waits ``2 ** (n - free)`` seconds after the last
    failure (at most ``max_delay``); from ``lock_after`` failures the key is locked for
    ``lock_seconds``. Failures are forgotten ``window`` seconds after the last one (so a
    lock-out ends with it), and a user name's on a successful sign-in."""

    free: int
    max_delay: float
    lock_after: int
    lock_seconds: float
    window: float

    def wait(self, failures: int, last: float, now: float) -> tuple[float, bool]:
        """(seconds to wait before the next attempt, locked out)."""
        if failures >= self.lock_after:
            return max(0.0, last + self.lock_seconds - now), True
        if failures < self.free:
            return 0.0, False
        delay = min(self.max_delay, 2.0 ** (failures - self.free))
        return max(0.0, last + delay - now), False


# A person mistyping a password is not slowed down; a guesser gets a few tries a minute
# and is locked out after 10. An address (one attacker spraying user names) gets more
# room: a clinic's staff may share one office address.
USER_POLICY = ThrottlePolicy(free=3, max_delay=60.0, lock_after=10, lock_seconds=900.0,
                             window=900.0)
ADDRESS_POLICY = ThrottlePolicy(free=10, max_delay=60.0, lock_after=30, lock_seconds=900.0,
                                window=900.0)
_MAX_KEYS = 10_000  # the state file stays small whatever names are sprayed


@dataclass(frozen=True)
class SignIn:
    """The outcome of a password sign-in: a user, or why not (``refused``: throttled)."""

    user: User | None
    message: str | None = None
    refused: bool = False


class SignInThrottle:
    """Failures per key in ``TANDEM_HOME/secrets/sign_in_throttle.json`` (0600), under a file
    lock: shared by every session and every dashboard process of one home."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time):
        self.path = settings.secrets_dir / "sign_in_throttle.json"
        self.lock = FileLock(str(self.path) + ".lock")
        self.clock = clock

    def _load(self) -> dict[str, list[float]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 2}

    def _save(self, state: dict[str, list[float]]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if len(state) > _MAX_KEYS:
            state = dict(sorted(state.items(), key=lambda kv: kv[1][1])[-_MAX_KEYS:])
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".throttle.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    @staticmethod
    def _policy(key: str) -> ThrottlePolicy:
        return USER_POLICY if key.startswith("user:") else ADDRESS_POLICY

    def _current(self, state: dict, key: str, now: float) -> tuple[int, float]:
        failures, last = state.get(key, (0, 0.0))
        if now - last > self._policy(key).window:
            return 0, 0.0
        return int(failures), float(last)

    def check(self, keys: list[str]) -> tuple[float, bool]:
        """(seconds until an attempt is allowed, whether a key is locked out)."""
        now = self.clock()
        with self.lock:
            state = self._load()
        wait, locked = 0.0, False
        for key in keys:
            w, lk = self._policy(key).wait(*self._current(state, key, now), now)
            if w > 0:
                wait, locked = max(wait, w), locked or lk
        return wait, locked

    def failed(self, keys: list[str]) -> list[str]:
        """Count a failure under each key; the keys this failure locked out."""
        now = self.clock()
        newly_locked = []
        with self.lock:
            state = self._load()
            for key in keys:
                failures, _ = self._current(state, key, now)
                state[key] = [failures + 1, now]
                if failures + 1 == self._policy(key).lock_after:
                    newly_locked.append(key)
            state = {k: v for k, v in state.items()
                     if now - v[1] <= self._policy(k).window}
            self._save(state)
        return newly_locked

    def succeeded(self, key: str) -> None:
        with self.lock:
            state = self._load()
            if state.pop(key, None) is not None:
                self._save(state)


def _keys(username: str, address: str | None) -> list[str]:
    return [f"user:{username.strip().casefold()[:128]}", f"addr:{address or 'local'}"]


def sign_in(settings: Settings, username: str, password: str, address: str | None,
            throttle: SignInThrottle | None = None) -> SignIn:
    """A throttled, audited password sign-in (what the sign-in form calls).

    While a user name or the address must wait (or is locked out), the password is not
    checked at all: the right one is refused like a wrong one."""
    throttle = throttle or SignInThrottle(settings)
    keys = _keys(username, address)
    shown = username.strip()[:64]
    wait, locked = throttle.check(keys)
    if wait > 0:
        audit(settings, None, "sign_in_locked" if locked else "sign_in_throttled",
              username=shown, address=address, wait_seconds=round(wait))
        if locked:
            return SignIn(None, f"Too many failed sign-ins: signing in is locked for "
                                f"{_minutes(wait)}. Ask an administrator if this was not "
                                f"you.", refused=True)
        return SignIn(None, f"Too many failed sign-ins: wait {max(1, round(wait))} s and try "
                            f"again.", refused=True)
    user = authenticate(settings, username, password)
    if user is None:
        audit(settings, None, "sign_in_failed", username=shown, address=address)
        for key in throttle.failed(keys):
            audit(settings, None, "sign_in_lockout", key=key.split(":", 1)[0],
                  username=shown, address=address,
                  minutes=round(throttle._policy(key).lock_seconds / 60))
        return SignIn(None, "Unknown user name or wrong password.")
    throttle.succeeded(keys[0])
    return SignIn(user)


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes > 1 else ''}"
