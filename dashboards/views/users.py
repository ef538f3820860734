"""Users (admins): who may sign in, with which role and clinics (never the password hashes)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboards import auth, ui
from tandem.core.settings import get_settings

user = ui.current_user()
if user is None or user.role != "admin":
    st.error("Your role may not see this page.")
    st.stop()
settings = get_settings()
st.title("Users")
users = auth.load_users(settings)
st.dataframe(pl.DataFrame([
    {"user": name, "role": e.get("role"), "clinics": ", ".join(e.get("clinics") or ["*"]),
     "e-mail (SSO)": e.get("email") or "",
     "password": "set" if e.get("password_hash") else "SSO only"}
    for name, e in sorted(users.items())]), hide_index=True)
st.caption("Add users with `tandem users add NAME --role director --clinic northside`; "
           "passwords are stored as bcrypt hashes in TANDEM_HOME/users.yaml.")
