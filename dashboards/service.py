"""The dashboard's requests to the service: a flow run of a served deployment, asked for over
Prefect's REST API (httpx, no Prefect import), and its state read back.

The dashboard never runs the pipeline: the quality pages ask the service (``tandem serve``,
or workers of its work pool) to run the repair deployments ``reprocess/manual`` and
``republish/manual`` (flows/repair.py), and show the run's name, state and page.
Every failure is a :class:`ServiceUnavailable` whose message is a sentence for the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tandem.core.service_api import configured_api_url, flow_run_url

TIMEOUT_SECONDS = 10.0
REPROCESS = ("reprocess", "manual")
REPUBLISH = ("republish", "manual")


class ServiceUnavailable(Exception):
    """No Prefect server configured, or it does not answer, or it lacks the deployment."""


@dataclass(frozen=True)
class RunRequest:
    """A flow run the service was asked for."""

    id: str
    name: str
    deployment: str  # "flow/deployment"
    state: str
    url: str


def api_url() -> str:
    """The configured Prefect API (environment or active profile), else a sentence."""
    url = configured_api_url()
    if not url:
        raise ServiceUnavailable(
            "No Prefect server is configured for this dashboard (PREFECT_API_URL), so it "
            "cannot ask the service to run repairs. Start the dashboard with `tandem serve`, "
            "or run `tandem reprocess` / `tandem republish` on the Tandem host.")
    return url


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=TIMEOUT_SECONDS,
                        verify=not url.startswith("http://"))


def _down(url: str, exc: Exception) -> ServiceUnavailable:
    reason = (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
    return ServiceUnavailable(f"The Prefect server at {url} does not answer ({reason}). Is "
                              "`tandem serve` running? Nothing was requested.")


def request_run(flow: str, deployment: str, parameters: dict[str, Any],
                tags: tuple[str, ...] = ("tandem", "dashboard")) -> RunRequest:
    """A flow run of deployment ``flow/deployment`` with these parameters (Scheduled now;
    the service's runner or a worker picks it up)."""
    url = api_url()
    name = f"{flow}/{deployment}"
    try:
        with _client(url) as client:
            found = client.get(f"/deployments/name/{flow}/{deployment}")
            if found.status_code == 404:
                raise ServiceUnavailable(
                    f"The Prefect server at {url} has no deployment {name}: the service has "
                    "not registered it (is `tandem serve` running this version of Tandem?). "
                    "Nothing was requested.")
            found.raise_for_status()
            made = client.post(f"/deployments/{found.json()['id']}/create_flow_run",
                               json={"parameters": parameters, "tags": list(tags)})
            made.raise_for_status()
            body = made.json()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise _down(url, exc) from None
    state = (body.get("state") or {}).get("name") or body.get("state_name") or "Scheduled"
    return RunRequest(str(body["id"]), str(body["name"]), name, str(state),
                      flow_run_url(url, str(body["id"])))


def run_state(run_id: str) -> str:
    """The current state of a flow run (``Scheduled``, ``Running``, ``Completed``...), or a
    short note when the server cannot tell."""
    try:
        url = api_url()
        with _client(url) as client:
            got = client.get(f"/flow_runs/{run_id}")
            got.raise_for_status()
            body = got.json()
    except ServiceUnavailable:
        return "unknown (no Prefect server configured)"
    except (httpx.HTTPError, ValueError):
        return "unknown (the Prefect server does not answer)"
    return str((body.get("state") or {}).get("name") or body.get("state_name") or "unknown")
