"""Tandem dashboard entry point: `tandem dashboard` (streamlit run dashboards/app.py).

Sign-in first (users file with bcrypt hashes, or SSO through ``st.login`` when configured),
then a page list by role: directors see aggregates for their clinics; quality teams also
see loads, validation, lineage, completeness and row-level lists; admins see everything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

if __package__ in (None, ""):  # `streamlit run dashboards/app.py` runs this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboards import auth, ui  # noqa: E402
from tandem.settings import get_settings  # noqa: E402

PAGES = Path(__file__).resolve().parent / "pages"

DIRECTOR_PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("practices.py", "Collaborative practices", ":material/handshake:"),
    ("alliance.py", "Alliance", ":material/favorite:"),
    ("therapists.py", "Therapists", ":material/groups:"),
    ("off_track.py", "Off-track episodes", ":material/warning:"),
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


def sign_in() -> None:
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
            st.session_state["user"] = user
            auth.audit(settings, user, "sign_in", method="oidc")
            st.rerun()
        st.button("Sign in with SSO", on_click=st.login, type="primary")
        st.divider()
    with st.form("sign_in"):
        username = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        user = auth.authenticate(settings, username, password)
        if user is None:
            auth.audit(settings, None, "sign_in_failed", username=username[:64])
            st.error("Unknown user name or wrong password.")
        else:
            st.session_state["user"] = user
            auth.audit(settings, user, "sign_in", method="password")
            st.rerun()


def sign_out() -> None:
    st.session_state.pop("user", None)
    if _sso_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


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
current = ui.current_user()
if current is None:
    st.navigation([st.Page(sign_in, title="Sign in", url_path="sign-in")], position="hidden").run()
else:
    with st.sidebar:
        clinics = "all clinics" if current.all_clinics else ", ".join(current.clinics or ())
        st.caption(f"Signed in as **{current.name}** ({current.role}; {clinics})")
        st.button("Sign out", on_click=sign_out, key="sign_out")
    st.navigation(pages_for(current)).run()
