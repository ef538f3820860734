"""The dashboard's server: `tandem dashboard` runs ``streamlit run dashboards/app.py``.

Streamlit finds the ``st.App`` below and serves the dashboard script (dashboards/main.py)
with two routes of Tandem's own that set and clear the HttpOnly session cookie
(dashboards/routes.py), so a sign-in lasts across reloads and new tabs.
"""

from pathlib import Path

import streamlit as st

from dashboards import sessions
from dashboards.routes import ROUTES

app = st.App(str(Path(__file__).resolve().with_name("main.py")), routes=ROUTES)
sessions.ROUTES_ACTIVE = True  # a sign-in may now hand its session to the cookie route
