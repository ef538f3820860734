"""The Tandem dashboard's Streamlit script (served by dashboards/app.py: `tandem dashboard`).

Sign-in first (users file with bcrypt hashes, throttled; or SSO through ``st.login`` when
configured), then a page list by role: directors see aggregates for their clinics; quality
teams also see loads, validation, lineage, completeness and row-level lists; admins see
everything. A password sign-in lasts across reloads and new tabs (an HttpOnly session
cookie, dashboards.sessions). A deep link (``/lineage?clinic=x&month=2026-03``) opened
signed out shows the sign-in form at that address and, once signed in, the page it names.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from dashboards import auth, sessions, ui
from tandem.core.settings import get_settings

# Not "pages/": Streamlit treats a pages/ folder beside the script as an old-style
# multipage app until st.navigation runs, and would run a page file straight from its
# URL (/overview) without this script in front of it.
PAGES = Path(__file__).resolve().parent / "views"

DIRECTOR_PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("practices.py", "Collaborative practices", ":material/handshake:"),
    ("alliance.py", "Alliance", ":material/favorite:"),
    ("therapists.py", "Therapists", ":material/groups:"),
    ("effect_sizes.py", "Effect sizes", ":material/query_stats:"),
    ("off_track.py", "Off-track episodes", ":material/warning:"),
    ("outcome_definitions.py", "Outcome definitions", ":material/menu_book:"),
]
QUALITY_PAGES = [
    ("loads.py", "Loads and quarantine", ":material/upload_file:"),
    ("validation.py", "Validation history", ":material/rule:"),
    ("lineage.py", "Lineage", ":material/account_tree:"),
    ("completeness.py", "Completeness", ":material/checklist:"),
]
ADMIN_PAGES = [("users.py", "Users", ":material/manage_accounts:")]


def _sso_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all
        return False


def _address() -> str | None:
    """The client's address for sign-in throttling. Streamlit reports None for a loopback
    peer; that peer is then either a local user or the TLS proxy on this host, which
    names the client in the last X-Forwarded-For entry (the one it appended itself; any
    earlier entry could be the client's own invention). A remote peer's X-Forwarded-For is
    never trusted."""
    try:
        value = st.context.ip_address
        if value is None:
            forwarded = st.context.headers.get("X-Forwarded-For")
            if isinstance(forwarded, str) and forwarded.strip():
                value = forwarded.split(",")[-1].strip()[:64] or None
    except Exception:  # noqa: BLE001 - no browser request (AppTest, a bare script run)
        return None
    return value if isinstance(value, str) else None


def restore_session() -> auth.User | None:
    """The user of a valid session cookie (a reload, a new tab, a deep link), if any."""
    token = sessions.request_cookie()
    if not token:
        return None
    user = sessions.resolve(get_settings(), token)
    if user is not None:
        st.session_state["user"] = user
        st.session_state["session_token"] = token
    return user


def _here(url_path: str) -> str:
    """The address this sign-in was opened at: the page and its query string."""
    try:
        query = urlencode(st.query_params.to_dict())
    except Exception:  # noqa: BLE001
        query = ""
    return f"/{url_path}" + (f"?{query}" if query else "")


def _signed_in(settings, user: auth.User, method: str, url_path: str) -> None:
    st.session_state["user"] = user
    auth.audit(settings, user, "sign_in", method=method, address=_address())
    if method == "password" and sessions.routes_active():
        token = sessions.create(settings, user, _address())
        st.session_state["session_token"] = token
        code = sessions.issue_handoff(token, _here(url_path))
        sessions.browser_redirect(f"{sessions.HANDOFF_PATH}?code={code}")
        st.stop()
    st.rerun()


def sign_in(url_path: str = "") -> None:
    """The sign-in form (and the SSO button when OIDC is configured)."""
    st.title("Tandem: outcomes and alliance")
    settings = get_settings()
    if _sso_configured():
        if getattr(st.user, "is_logged_in", False):
            user = auth.user_for_email(settings, str(st.user.get("email") or ""))
            if user is None:
                st.error("Your SSO account has no Tandem role; ask an administrator.")
                st.button("Sign out of SSO", on_click=st.logout)
                st.stop()
            _signed_in(settings, user, "oidc", url_path)
        st.button("Sign in with SSO", on_click=st.login, type="primary")
        st.divider()
    with st.form("sign_in"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        result = auth.sign_in(settings, username, password, _address())
        if result.user is None:
            st.error(result.message)
        else:
            _signed_in(settings, result.user, "password", url_path)


def sign_out() -> None:
    settings = get_settings()
    user = ui.current_user()
    token = st.session_state.pop("session_token", None) or sessions.request_cookie()
    sessions.revoke(settings, token)
    st.session_state.pop("user", None)
    auth.audit(settings, user, "sign_out")
    if _sso_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()
    elif sessions.routes_active():
        sessions.browser_redirect(sessions.SIGN_OUT_PATH)  # clears the HttpOnly cookie


def sign_in_pages() -> list:
    """Signed out: the sign-in form at every page's address, so a deep link keeps its page
    and query string through the sign-in (it used to end at "Page not found")."""
    def at(url_path: str):
        def page() -> None:
            sign_in(url_path)
        return page

    # The default page lives at "/" (Streamlit answers "Page not found" at /overview), so
    # a sign-in opened there comes back there.
    everything = DIRECTOR_PAGES + QUALITY_PAGES + ADMIN_PAGES
    return [st.Page(at("" if i == 0 else f.removesuffix(".py")), title="Sign in",
                    url_path=f.removesuffix(".py"), default=i == 0)
            for i, (f, _, _) in enumerate(everything)]


def pages_for(user: auth.User) -> dict[str, list]:
    """The navigation for a role."""
    def make(items: list[tuple[str, str, str]]) -> list:
        return [st.Page(PAGES / f, title=t, icon=i, url_path=f.removesuffix(".py"))
                for f, t, i in items]
    nav = {"Outcomes": make(DIRECTOR_PAGES)}
    if user.role in ("quality", "admin"):
        nav["Data quality"] = make(QUALITY_PAGES)
    if user.role == "admin":
        nav["Administration"] = make(ADMIN_PAGES)
    return nav


st.set_page_config(page_title="Tandem", layout="wide", page_icon=":material/monitoring:")
current = ui.current_user() or restore_session()
if current is None:
    st.navigation(sign_in_pages(), position="hidden").run()
else:
    with st.sidebar:
        clinics = "all clinics" if current.all_clinics else ", ".join(current.clinics or ())
        st.caption(f"Signed in as **{current.name}** ({current.role}; {clinics})")
        st.button("Sign out", on_click=sign_out, key="sign_out")
    st.navigation(pages_for(current)).run()
