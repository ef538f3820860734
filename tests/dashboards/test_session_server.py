"""The real dashboard server (``streamlit run dashboards/app.py``) keeps a sign-in across
reloads and serves deep links (issue 17, item 10), spoken to over Streamlit's own
websocket protocol, as a browser would (no browser needed).

Before: a reload or a new tab signed you out (the user lived in one tab's session state),
and ``/lineage?clinic=...`` opened signed out ended at "Page not found" and lost its page.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from dashboards import auth, sessions
from tandem.core.settings import Settings
from tests.conftest import REPO_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def server(marts, tandem_home: Settings):
    """The dashboard server on a free port; its process group is killed at the end."""
    port = _free_port()
    env = {**os.environ, "TANDEM_HOME": str(tandem_home.home_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "dashboards" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _render(url: str, page: str, query: str = "", cookie: str | None = None,
            fill: dict[str, str] | None = None) -> dict:
    """One new script session (a page load) of ``page``: what it shows. With ``fill``
    (label -> text), the form on it is then filled in and submitted in the same session,
    as a person would, and what that run shows (and any redirect) is returned."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    host = url.removeprefix("http://")
    headers = {"Origin": url}
    if cookie:
        headers["Cookie"] = f"{sessions.COOKIE}={cookie}"

    def run(ws, widgets=None) -> dict:
        seen = {"page_not_found": False, "inputs": [], "texts": [], "ids": {},
                "submit": None, "redirect": None}
        msg = BackMsg()
        msg.rerun_script.query_string = query
        msg.rerun_script.page_name = page
        for widget in widgets or []:
            msg.rerun_script.widget_states.widgets.append(widget)
        ws.send(msg.SerializeToString())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            fwd = ForwardMsg()
            fwd.ParseFromString(ws.recv(timeout=120))
            kind = fwd.WhichOneof("type")
            if kind == "page_not_found":
                seen["page_not_found"] = True
            elif kind == "auth_redirect":
                seen["redirect"] = fwd.auth_redirect.url
            elif kind == "delta" and fwd.delta.WhichOneof("type") == "new_element":
                el = fwd.delta.new_element
                which = el.WhichOneof("type")
                if which == "heading":
                    seen["texts"].append(el.heading.body)
                elif which == "text_input":
                    seen["inputs"].append(el.text_input.label)
                    seen["ids"][el.text_input.label] = el.text_input.id
                elif which == "button" and el.button.is_form_submitter:
                    seen["submit"] = el.button.id
                elif which == "selectbox":
                    box = el.selectbox
                    seen["texts"].append(f"{box.label}={box.options[box.default]}"
                                         if box.options else box.label)
                elif which in ("markdown", "alert"):
                    seen["texts"].append(getattr(el, which).body)
            elif kind == "script_finished":
                break
        return seen

    with connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit"],
                 additional_headers=headers, open_timeout=30) as ws:
        seen = run(ws)
        if fill is None:
            return seen
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        widgets = []
        for label, text in fill.items():
            widgets.append(WidgetState(id=seen["ids"][label], string_value=text))
        widgets.append(WidgetState(id=seen["submit"], trigger_value=True))
        return run(ws, widgets)


def test_a_session_cookie_signs_in_a_reload_and_a_deep_link_keeps_its_page(server, marts,
                                                                          tandem_home):
    auth.add_user(tandem_home, "quinn", "quality-pass", "quality", None, "Quinn Quality")
    clinic = sorted(marts["dir_outcomes"]["clinic_id"].drop_nulls().unique())[-1]
    query = f"instrument=ORS&clinic={clinic}"

    signed_out = _render(server, "lineage", query)
    assert not signed_out["page_not_found"]
    assert signed_out["inputs"] == ["User name", "Password"]

    token = sessions.create(tandem_home, auth.user_by_name(tandem_home, "quinn"))
    again = _render(server, "lineage", query, cookie=token)  # a reload, or a new tab
    assert not again["page_not_found"] and again["inputs"] == []
    assert "Lineage" in again["texts"] and f"Clinic={clinic}" in again["texts"], again

    sessions.revoke(tandem_home, token)  # signed out elsewhere: the cookie is dead
    assert _render(server, "lineage", query, cookie=token)["inputs"] == ["User name",
                                                                         "Password"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert _render(server, "overview", cookie=forged)["inputs"] == ["User name", "Password"]


def test_signing_in_on_the_server_sets_the_cookie_and_returns_to_the_deep_link(server,
                                                                               marts,
                                                                               tandem_home):
    """The whole path a browser takes: the form, the redirect to the cookie route with a
    one-time code, the HttpOnly cookie and the deep link, then a reload signed in."""
    auth.add_user(tandem_home, "quinn", "quality-pass", "quality", None, "Quinn Quality")
    clinic = sorted(marts["dir_outcomes"]["clinic_id"].drop_nulls().unique())[0]
    query = f"instrument=ORS&clinic={clinic}"
    wrong = _render(server, "lineage", query, fill={"User name": "quinn",
                                                   "Password": "not it"})
    assert wrong["redirect"] is None and "Unknown user name or wrong password." in \
        wrong["texts"]
    done = _render(server, "lineage", query, fill={"User name": "quinn",
                                                  "Password": "quality-pass"})
    assert done["redirect"] and done["redirect"].startswith(sessions.HANDOFF_PATH + "?code=")
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(server + done["redirect"], timeout=10)
    assert info.value.code == 303
    assert info.value.headers["Location"] == f"/lineage?{query}"
    cookie = info.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    reload = _render(server, "lineage", query, cookie=token)
    assert reload["inputs"] == [] and "Lineage" in reload["texts"]
    assert f"Clinic={clinic}" in reload["texts"]
    with pytest.raises(urllib.error.HTTPError) as again:  # the code works once
        opener.open(server + done["redirect"], timeout=10)
    assert again.value.headers["Location"] == "/"


def test_the_server_carries_the_cookie_routes(server):
    opener = urllib.request.build_opener(_NoRedirect)
    for path in (f"{sessions.HANDOFF_PATH}?code=never-issued", sessions.SIGN_OUT_PATH):
        with pytest.raises(urllib.error.HTTPError) as info:
            opener.open(f"{server}{path}", timeout=10)
        assert info.value.code == 303 and info.value.headers["Location"] == "/"
        assert "tandem_session=" not in (info.value.headers.get("Set-Cookie") or "") \
            or "Max-Age=0" in info.value.headers.get("Set-Cookie")
