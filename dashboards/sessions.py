"""Dashboard sessions that survive a reload: a signed, expiring, HttpOnly cookie.

Streamlit keeps ``st.session_state`` per browser tab and forgets it on a reload, so a
password sign-in used to last one tab. Now a successful sign-in also creates a session:

1. :func:`create` makes a random session id, keeps its SHA-256 with the user name and
   expiry in ``TANDEM_HOME/secrets/dashboard_sessions.json`` (0600; the ids themselves
   are never stored), and returns the cookie value ``<id>.<expiry>.<HMAC>`` (keyed with
   ``secrets/dashboard_session.key``);
2. the script cannot set an HttpOnly cookie over its websocket, so it hands the value to
   the server through a one-time code (:func:`issue_handoff`, 60 seconds, this process's
   memory) and sends the browser to ``/_tandem/session?code=...`` (dashboards.routes),
   which sets the cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) and redirects to
   the page the user asked for, query string included;
3. every new script session (a reload, a new tab, a deep link) reads the cookie
   (``st.context.cookies``) and :func:`resolve` checks the signature, the expiry, that the
   session was not revoked, and that the user still exists with a role (read afresh from
   ``users.yaml``).

Signing out revokes the session (server side) and clears the cookie
(``/_tandem/sign-out``). Sessions last ``TANDEM_DASHBOARD_SESSION_HOURS`` (8).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from urllib.parse import urlsplit

from filelock import FileLock

from dashboards import auth
from tandem.core.settings import Settings

COOKIE = "tandem_session"
HANDOFF_PATH = "/_tandem/session"
SIGN_OUT_PATH = "/_tandem/sign-out"
HANDOFF_SECONDS = 60.0
_TOKEN = re.compile(r"^([A-Za-z0-9_-]{43})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")
# Set by the launcher (dashboards/app.py) when the server carries the routes;
# without them (a bare `streamlit run main.py`, AppTest) a sign-in lasts the tab.
ROUTES_ACTIVE = False


def routes_active() -> bool:
    return ROUTES_ACTIVE


def browser_redirect(url: str) -> None:
    """Send the browser to ``url`` (a route of this server), the way ``st.login`` sends it
    to the identity provider (Streamlit's redirect message)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None:
        msg = ForwardMsg()
        msg.auth_redirect.url = url
        ctx.enqueue(msg)


def request_cookie() -> str | None:
    """The session cookie the browser sent with this script session, if any."""
    import streamlit as st

    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no browser request (AppTest, a bare script run)
        return None
    return value if isinstance(value, str) else None


def _key(settings: Settings) -> bytes:
    """The signing key, made once (32 random bytes, 0600) beside the pseudonym key."""
    path = settings.secrets_dir / "dashboard_session.key"
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        pass
    settings.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex())
    return key


def _sign(key: bytes, sid: str, expires: int) -> str:
    mac = hmac.new(key, f"v1.{sid}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _id_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class _Store:
    """Sessions by id hash, in one small JSON file under a file lock."""

    def __init__(self, settings: Settings):
        self.path = settings.secrets_dir / "dashboard_sessions.json"
        self.lock = FileLock(str(self.path) + ".lock")

    def load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, dict]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".sessions.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


def create(settings: Settings, user: auth.User, address: str | None = None,
           now: float | None = None) -> str:
    """A new session for ``user``: its cookie value."""
    now = time.time() if now is None else now
    expires = int(now + settings.dashboard_session_hours * 3600)
    sid = secrets.token_urlsafe(32)
    store = _Store(settings)
    with store.lock:
        data = {h: s for h, s in store.load().items() if s.get("expires", 0) > now}
        data[_id_hash(sid)] = {
            "user": user.username, "expires": expires, "address": address,
            "created": dt.datetime.fromtimestamp(now, dt.UTC).isoformat()}
        store.save(data)
    return f"{sid}.{expires}.{_sign(_key(settings), sid, expires)}"


def _parse(settings: Settings, token: str | None, now: float) -> str | None:
    """The session id of a well-formed, correctly signed, unexpired cookie value."""
    m = _TOKEN.match(token or "")
    if not m:
        return None
    sid, expires, mac = m.group(1), int(m.group(2)), m.group(3)
    if not hmac.compare_digest(mac, _sign(_key(settings), sid, expires)) or expires <= now:
        return None
    return sid


def resolve(settings: Settings, token: str | None, now: float | None = None) -> auth.User | None:
    """The signed-in user of a cookie value, or None (forged, expired, revoked, or the user
    no longer has a role)."""
    now = time.time() if now is None else now
    sid = _parse(settings, token, now)
    if sid is None:
        return None
    session = _Store(settings).load().get(_id_hash(sid))
    if not session or session.get("expires", 0) <= now:
        return None
    return auth.user_by_name(settings, str(session.get("user", "")))


def revoke(settings: Settings, token: str | None) -> bool:
    """End a session (sign-out): its cookie no longer resolves, even if kept."""
    m = _TOKEN.match(token or "")
    if not m:
        return False
    store = _Store(settings)
    with store.lock:
        data = store.load()
        found = data.pop(_id_hash(m.group(1)), None) is not None
        if found:
            store.save(data)
    return found


def revoke_user(settings: Settings, username: str) -> int:
    """End every session of a user (e.g. after a password change or removal)."""
    store = _Store(settings)
    with store.lock:
        data = store.load()
        keep = {h: s for h, s in data.items() if s.get("user") != username}
        if len(keep) != len(data):
            store.save(keep)
    return len(data) - len(keep)


# --- hand-over from the script to the cookie route (one process) --------------------------

_handoffs: dict[str, tuple[str, str, float]] = {}
_handoffs_lock = threading.Lock()


def issue_handoff(token: str, next_path: str, now: float | None = None) -> str:
    """A one-time code (60 s) under which the cookie route finds the cookie value."""
    now = time.monotonic() if now is None else now
    code = secrets.token_urlsafe(32)
    with _handoffs_lock:
        for k in [k for k, v in _handoffs.items() if v[2] <= now]:
            del _handoffs[k]
        _handoffs[_id_hash(code)] = (token, safe_next(next_path), now + HANDOFF_SECONDS)
    return code


def redeem_handoff(code: str | None, now: float | None = None) -> tuple[str, str] | None:
    """(cookie value, where to go) for a code issued here and not used or expired yet."""
    now = time.monotonic() if now is None else now
    with _handoffs_lock:
        found = _handoffs.pop(_id_hash(code or ""), None)
    if found is None or found[2] <= now:
        return None
    return found[0], found[1]


def max_age(token: str, now: float | None = None) -> int:
    """Seconds until a cookie value expires (its Max-Age)."""
    m = _TOKEN.match(token)
    now = time.time() if now is None else now
    return max(0, int(m.group(2)) - int(now)) if m else 0


def safe_next(path: str | None) -> str:
    """A redirect target inside this site: a path (and query), never another host."""
    path = (path or "/").strip()
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not path.startswith("/") or path.startswith("//") \
            or "\\" in path or any(ord(c) < 32 for c in path):
        return "/"
    return path
