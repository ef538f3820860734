"""The dashboard server's two HTTP routes: set and clear the session cookie.

Mounted by the launcher (dashboards/app.py, ``st.App(..., routes=ROUTES)``). A script
cannot set an HttpOnly cookie over Streamlit's websocket, so after a sign-in it sends the
browser here with a one-time code (dashboards.sessions).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from dashboards import sessions
from tandem.core.settings import get_settings


def _secure(request: Request) -> bool:
    """Mark the cookie Secure when the browser talks HTTPS (directly or via the proxy)."""
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip().lower() == "https"


def _no_store(response: RedirectResponse) -> RedirectResponse:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def set_session(request: Request) -> RedirectResponse:
    """Redeem the sign-in's one-time code: set the cookie, go to the page asked for."""
    found = sessions.redeem_handoff(request.query_params.get("code"))
    if found is None:  # used, expired, or never issued: back to the sign-in
        return _no_store(RedirectResponse("/", status_code=303))
    token, target = found
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(sessions.COOKIE, token, max_age=sessions.max_age(token), path="/",
                        httponly=True, samesite="strict", secure=_secure(request))
    return _no_store(response)


async def sign_out(request: Request) -> RedirectResponse:
    """Revoke the session (if the script did not already) and clear the cookie."""
    sessions.revoke(get_settings(), request.cookies.get(sessions.COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict",
                           secure=_secure(request))
    return _no_store(response)


ROUTES = [
    Route(sessions.HANDOFF_PATH, set_session, methods=["GET"]),
    Route(sessions.SIGN_OUT_PATH, sign_out, methods=["GET"]),
]
