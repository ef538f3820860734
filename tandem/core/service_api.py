"""Where the service's Prefect API is, for every floor that talks to it over REST.

The command line (tandem.app.prefect_api) records its runs there; the dashboard
(dashboards.service) asks it to run the repair deployments. Neither imports Prefect.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path


def configured_api_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``PREFECT_API_URL`` from the environment, else from the active Prefect profile
    (``PREFECT_PROFILES_PATH`` or ``$PREFECT_HOME/profiles.toml``); None when neither sets
    one (Prefect would then start a temporary server)."""
    env = os.environ if environ is None else environ
    url = (env.get("PREFECT_API_URL") or "").strip()
    if url:
        return url.rstrip("/")
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = env.get("PREFECT_PROFILE") or profiles.get("active")
    profile = (profiles.get("profiles") or {}).get(active) or {}
    url = str(profile.get("PREFECT_API_URL") or "").strip()
    return url.rstrip("/") or None


def ui_url(api_url: str) -> str:
    """The Prefect UI's address for an API address (``.../api`` removed)."""
    return api_url.rstrip("/").removesuffix("/api")


def flow_run_url(api_url: str, run_id: str) -> str:
    """A flow run's page in the Prefect UI."""
    return f"{ui_url(api_url)}/runs/flow-run/{run_id}"
