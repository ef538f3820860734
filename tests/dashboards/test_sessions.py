"""Dashboard sessions (issue 17, item 10): signed, expiring, revocable, HttpOnly; a deep link
survives the sign-in. The real server is exercised in test_session_server.py."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from streamlit.testing.v1 import AppTest

from dashboards import auth, routes, sessions
from tests.dashboards.conftest import APP


@pytest.fixture
def dana(tandem_home):
    auth.add_user(tandem_home, "dana", "correct horse", "director", ["northside"])
    return auth.user_by_name(tandem_home, "dana")


def test_a_session_resolves_until_it_expires_is_revoked_or_its_user_goes(tandem_home, dana):
    now = time.time()
    token = sessions.create(tandem_home, dana, "203.0.113.7", now=now)
    assert sessions.resolve(tandem_home, token, now=now) == dana
    hours = tandem_home.dashboard_session_hours
    assert sessions.resolve(tandem_home, token, now=now + hours * 3600 - 5) == dana
    assert sessions.resolve(tandem_home, token, now=now + hours * 3600 + 1) is None
    # the store holds hashes of the ids, never a usable cookie value
    store = (tandem_home.secrets_dir / "dashboard_sessions.json").read_text()
    assert token.split(".")[0] not in store and "dana" in store
    for name in ("dashboard_sessions.json", "dashboard_session.key"):
        assert stat.S_IMODE(os.stat(tandem_home.secrets_dir / name).st_mode) == 0o600
    # a changed role takes effect at once; a removed user's session is dead
    auth.add_user(tandem_home, "dana", "correct horse", "quality", None)
    assert sessions.resolve(tandem_home, token).role == "quality"
    users = auth.load_users(tandem_home)
    users.pop("dana")
    auth.save_users(tandem_home, users)
    assert sessions.resolve(tandem_home, token) is None


def test_forged_tampered_and_revoked_cookies_are_refused(tandem_home, dana):
    token = sessions.create(tandem_home, dana)
    sid, expires, mac = token.split(".")
    later = str(int(expires) + 86_400 * 365)
    for bad in (f"{sid}.{later}.{mac}", f"{sid}.{expires}.{mac[:-2]}AA", "garbage", "",
                None, token + "x", f"{'A' * 43}.{expires}.{mac}"):
        assert sessions.resolve(tandem_home, bad) is None, bad
    assert sessions.revoke(tandem_home, token)
    assert sessions.resolve(tandem_home, token) is None
    other = sessions.create(tandem_home, dana)
    assert sessions.revoke_user(tandem_home, "dana") == 1
    assert sessions.resolve(tandem_home, other) is None


def test_a_handoff_code_works_once_and_briefly():
    code = sessions.issue_handoff("tok", "/lineage?clinic=northside&month=2026-03", now=100.0)
    assert sessions.redeem_handoff(code, now=110.0) == ("tok",
                                                        "/lineage?clinic=northside&month=2026-03")
    assert sessions.redeem_handoff(code, now=111.0) is None
    late = sessions.issue_handoff("tok", "/", now=100.0)
    assert sessions.redeem_handoff(late, now=100.0 + sessions.HANDOFF_SECONDS + 1) is None
    assert sessions.redeem_handoff("never-issued") is None


@pytest.mark.parametrize("target, expected", [
    ("/lineage?clinic=x&month=2026-03", "/lineage?clinic=x&month=2026-03"),
    ("/overview", "/overview"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), ("javascript:alert(1)", "/"), ("overview", "/"),
    ("/x\r\nSet-Cookie: a=b", "/"), (None, "/")])
def test_a_redirect_never_leaves_the_site(target, expected):
    assert sessions.safe_next(target) == expected


def test_the_cookie_route_sets_an_httponly_cookie_once_and_sign_out_clears_it(tandem_home,
                                                                             dana):
    client = TestClient(Starlette(routes=routes.ROUTES), base_url="https://dash.example")
    token = sessions.create(tandem_home, dana)
    code = sessions.issue_handoff(token, "/lineage?clinic=northside")
    r = client.get(f"{sessions.HANDOFF_PATH}?code={code}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/lineage?clinic=northside"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}={token};")
    for attribute in ("HttpOnly", "SameSite=strict", "Secure", "Path=/", "Max-Age="):
        assert attribute in cookie, cookie
    assert r.headers["cache-control"] == "no-store"
    again = client.get(f"{sessions.HANDOFF_PATH}?code={code}", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/"
    assert "set-cookie" not in again.headers
    out = client.get(sessions.SIGN_OUT_PATH, follow_redirects=False,
                     cookies={sessions.COOKIE: token})
    assert out.status_code == 303 and 'tandem_session=""' in out.headers["set-cookie"]
    assert sessions.resolve(tandem_home, token) is None


def test_the_app_restores_a_session_from_its_cookie(marts, tandem_home, dana, monkeypatch):
    token = sessions.create(tandem_home, dana)
    monkeypatch.setattr(sessions, "request_cookie", lambda: token)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Overview"
    assert at.session_state["user"] == dana


def test_signing_in_hands_the_session_to_the_cookie_route_with_the_deep_link(
        marts, tandem_home, dana, monkeypatch):
    """With the routes mounted, a sign-in ends in a redirect to the cookie route carrying a
    one-time code that leads back to the page and query string asked for."""
    sent: list[str] = []
    monkeypatch.setattr(sessions, "ROUTES_ACTIVE", True)
    monkeypatch.setattr(sessions, "browser_redirect", sent.append)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["clinic"] = "northside"
    at.run()
    at.text_input[0].input("dana")
    at.text_input[1].input("correct horse")
    at.button[0].click().run()
    assert not at.exception
    [url] = sent
    assert url.startswith(sessions.HANDOFF_PATH + "?code=")
    token, target = sessions.redeem_handoff(url.split("code=", 1)[1])
    assert target == "/?clinic=northside"  # the default page lives at /, not /overview
    assert sessions.resolve(tandem_home, token) == dana
    log = [json.loads(x) for x in
           (tandem_home.audit_dir / "access.jsonl").read_text().splitlines()]
    assert [x["action"] for x in log] == ["sign_in"]
