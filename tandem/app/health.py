"""``tandem health``: which part of the service is up, and which is down.

It reads what the running ``tandem serve`` recorded in ``run/serve.json`` (its children's
PIDs and addresses) and asks each part: the Prefect server and the endpoint and dashboard
answer their health URLs, the deployments, watcher and service itself must be alive, the
warehouse must open for reading, the published marts must exist, and configured
notifications need their automations on the Prefect server.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from tandem.app.clikit import join_words
from tandem.core.settings import Settings

TIMEOUT = 3.0


@dataclass
class Part:
    name: str
    ok: bool
    state: str  # up | down | off | none yet | behind
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _get(url: str) -> tuple[bool, str]:
    import httpx

    try:
        r = httpx.get(url, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return False, f"does not answer at {url} ({type(exc).__name__})"
    if r.status_code != 200:
        return False, f"answers {r.status_code} at {url}"
    return True, url


def _serve_state(settings: Settings) -> dict[str, Any] | None:
    from tandem.app.serve import _alive, state_path

    try:
        info = json.loads(state_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if _alive(info.get("pid")) else None


def service_parts(settings: Settings) -> list[Part]:
    """The processes of ``tandem serve``."""
    from tandem.app.serve import _alive

    info = _serve_state(settings)
    if info is None:
        why = "tandem serve is not running (start it with `tandem serve`)"
        return [Part("tandem serve", False, "down", why)]
    children = info.get("children") or {}
    parts = [Part("tandem serve", True, "up", f"pid {info['pid']}")]
    api_url = info.get("prefect_api_url")
    if api_url:
        ok, detail = _get(f"{api_url}/health")
        ui = info.get("prefect_ui") or api_url.removesuffix("/api")
        parts.append(Part("Prefect server", ok, "up" if ok else "down",
                          f"UI {ui} (runs, events, automations)" if ok else detail))
    for name, label in (("deployments", "deployments"), ("watcher", "inbox watcher")):
        if name in children:
            alive = _alive(children[name])
            parts.append(Part(label, alive, "up" if alive else "down",
                              f"pid {children[name]}" if alive else
                              f"pid {children[name]} has exited (see logs/{name}.log)"))
        else:
            parts.append(Part(label, True, "off", "not started (--no-" +
                              ("watcher" if name == "watcher" else name) + ")"))
    for key, label, path in (("batch_endpoint", "batch endpoint", "/health"),
                             ("dashboard", "dashboard", "/_stcore/health")):
        url = info.get(key)
        if not url:
            parts.append(Part(label, True, "off", "not started"))
            continue
        ok, detail = _get(f"{url}{path}")
        parts.append(Part(label, ok, "up" if ok else "down", url if ok else detail))
    return parts


def _unreadable(snap, settings: Settings) -> str | None:
    """Why the published snapshot cannot be read (its lake snapshot expired, the catalog
    unreachable), or None when it can."""
    from tandem.core import published

    try:
        published.query_snapshot(snap, "SELECT 1", settings=settings)
    except Exception as exc:  # noqa: BLE001 - told, not raised
        return (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
    return None


def data_parts(settings: Settings) -> list[Part]:
    """The warehouse and the published marts."""
    from tandem.core import published, warehouse

    parts = []
    try:  # the lake's readers never wait for its writers
        latest = warehouse.latest_batch_id(settings)
        parts.append(Part("warehouse", True, "up",
                          f"{latest:,} batches" if latest else "no batches yet"))
    except Exception as exc:  # noqa: BLE001 - told, not raised
        latest = None
        parts.append(Part("warehouse", False, "down", f"cannot be read: {exc}"))
    snap = published.current(settings)
    if snap is None:
        parts.append(Part("published marts", True, "none yet", "run `tandem aggregate`"))
    elif (missing := _unreadable(snap, settings)) is not None:
        parts.append(Part("published marts", False, "down",
                          f"snapshot {snap.version} cannot be read: {missing}"))
    else:
        lag = published.marts_lag(settings)
        parts.append(Part("published marts", True, "behind" if lag.behind else "up",
                          f"snapshot {snap.version} of {snap.published_at:%Y-%m-%d %H:%M}"
                          + (f"; {lag.missing:,} batch(es) are not in it yet" if lag.behind
                             else "")))
    return parts


def notification_part(settings: Settings, api_url: str | None) -> Part:
    """Configured destinations, and their automations on the Prefect server."""
    from flows.notify import AUTOMATION_PREFIX, destinations

    where = destinations(settings)
    if not where:
        return Part("notifications", True, "off",
                    "no destination set (TANDEM_NOTIFY_EMAIL_TO, TANDEM_NOTIFY_WEBHOOK_URL)")
    if not api_url:
        return Part("notifications", False, "down",
                    f"{join_words(where)} set, but no Prefect server runs the automations")
    import httpx

    try:
        r = httpx.post(f"{api_url}/automations/filter", json={}, timeout=TIMEOUT)
        names = [a["name"] for a in r.json()] if r.status_code == 200 else []
    except httpx.HTTPError:
        names = []
    ours = [n for n in names if n.startswith(AUTOMATION_PREFIX)]
    if not ours:
        return Part("notifications", False, "down",
                    f"{join_words(where)} set, but their automations are missing "
                    "(they are made when the deployments start)")
    return Part("notifications", True, "up",
                f"{join_words(where)}; {len(ours)} automations")


def check_health(settings: Settings) -> list[Part]:
    parts = service_parts(settings)
    info = _serve_state(settings)
    api_ok = any(p.name == "Prefect server" and p.ok for p in parts)
    parts += data_parts(settings)
    parts.append(notification_part(settings, info.get("prefect_api_url")
                                   if info and api_ok else None))
    return parts


def render(parts: list[Part]) -> str:
    """A table for people (80 columns), then one sentence."""
    import textwrap

    width = max(len(p.name) for p in parts)
    lines = []
    for p in parts:
        lead = f"{p.name:<{width}}  {p.state:<8}  "
        detail = textwrap.wrap(p.detail, 78 - len(lead)) or [""]
        lines.append(lead + detail[0])
        lines += [" " * len(lead) + d for d in detail[1:]]
    down = [p.name for p in parts if not p.ok]
    if down:
        lines.append(f"{len(down)} {'part is' if len(down) == 1 else 'parts are'} down: "
                     f"{join_words(down)}.")
    else:
        lines.append("Every part is up.")
    return "\n".join(lines)
