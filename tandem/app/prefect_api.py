"""The command line's link to a running Prefect server, over its REST API (no Prefect import).

Importing Prefect costs 1.5-3 s, and running a flow in-process without a server makes
Prefect start a temporary one (about 10 s, a port and 230 MB, left running if the command
is killed). So the command line never runs Prefect itself:

* with no server configured (no ``PREFECT_API_URL`` in the environment or the active
  Prefect profile), commands run the Prefect-free pipeline and nothing else;
* with a server configured, they run the same pipeline and *record* it there: a flow run
  of the flow of the same name (``ingest``, ``aggregate``) with its parameters, state,
  log lines and the events the flow would emit (``tandem.batch.*``,
  ``tandem.marts.published``), so the run shows in the UI and the served deployments'
  triggers react to it as to a served run.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

from tandem.core.service_api import configured_api_url, flow_run_url, ui_url

__all__ = ["PrefectUnreachable", "RecordedRun", "configured_api_url", "event_body",
           "recorded_run", "ui_url"]

TIMEOUT_SECONDS = 10.0
# Prefect's own client asks again on these answers (a busy database answers 503), up to
# PREFECT_CLIENT_MAX_RETRIES (5) times, with jittered exponential waits or Retry-After.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRIES = 5
MAX_WAIT_SECONDS = 10.0
# Queued log lines and events go in one request per endpoint, at most this many at once.
BATCH_SIZE = 200


class PrefectUnreachable(Exception):
    """The configured Prefect server does not answer (or refuses what was sent)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def event_body(event: str, resource: dict[str, str], payload: dict[str, Any],
               related: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One event as ``POST /api/events`` takes it."""
    return {"id": str(uuid.uuid4()), "occurred": _now(), "event": event,
            "resource": resource, "related": related or [], "payload": payload}


class RecordedRun:
    """A flow run recorded on a Prefect server while the work runs in this process.

    :meth:`start` creates it (state Running); :meth:`log` and :meth:`emit` add log lines
    and events tied to it; :meth:`finish` sets its final state. Failures to log or emit
    after the start are kept quiet (the work matters more than its record); a failure to
    start raises :class:`PrefectUnreachable` before any work is done.
    """

    def __init__(self, api_url: str, flow_name: str, parameters: dict[str, Any],
                 tags: tuple[str, ...] = ("tandem", "cli")) -> None:
        import httpx  # only when a server is configured

        self.api_url = api_url.rstrip("/")
        self.flow_name = flow_name
        self.parameters = parameters
        self.tags = list(tags)
        self.id: str | None = None
        self.name: str | None = None
        self.flow_id: str | None = None
        self.finished = False
        # Log lines and events are queued and posted by one background thread, in order and
        # in batches (a back-fill of 2,325 files made 4,650 requests one by one), so the work
        # never waits for the server; finish() waits for them before the final state.
        self._posts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefect-post")
        self._queued: dict[str, list[dict[str, Any]]] = {"/logs/": [], "/events": []}
        self._queue_lock = threading.Lock()
        self._flush_pending = False
        # No certificate bundle to load for a plain-http server (it costs ~0.1 s).
        self._client = httpx.Client(base_url=self.api_url, timeout=TIMEOUT_SECONDS,
                                    verify=not self.api_url.startswith("http://"))
        self._http_error = httpx.HTTPError

    @property
    def url(self) -> str | None:
        """The run's page in the Prefect UI."""
        return flow_run_url(self.api_url, self.id) if self.id else None

    def start(self) -> RecordedRun:
        try:
            flow = self._request("/flows/", {"name": self.flow_name})
            flow.raise_for_status()
            self.flow_id = flow.json()["id"]
            run = self._request("/flow_runs/", {
                "flow_id": self.flow_id, "parameters": self.parameters, "tags": self.tags,
                "state": {"type": "RUNNING", "name": "Running"}})
            run.raise_for_status()
        except (self._http_error, KeyError, ValueError) as exc:
            self._posts.shutdown(wait=False)
            self._client.close()
            raise PrefectUnreachable(
                f"the Prefect server at {self.api_url} does not answer ({_reason(exc)})"
            ) from exc
        body = run.json()
        self.id, self.name = body["id"], body["name"]
        return self

    def related(self) -> list[dict[str, str]]:
        """This run (and its flow) as an event's related resources, as Prefect names them."""
        out = []
        if self.id:
            out.append({"prefect.resource.id": f"prefect.flow-run.{self.id}",
                        "prefect.resource.role": "flow-run",
                        "prefect.resource.name": str(self.name)})
        if self.flow_id:
            out.append({"prefect.resource.id": f"prefect.flow.{self.flow_id}",
                        "prefect.resource.role": "flow",
                        "prefect.resource.name": self.flow_name})
        return out

    def _request(self, path: str, body: Any) -> Any:
        """POST, asked again like Prefect's client does when the server says it is busy
        (429, 502, 503, 504; Retry-After honoured). A refused connection fails at once."""
        for attempt in range(MAX_RETRIES + 1):
            response = self._client.post(path, json=body)
            if response.status_code not in RETRY_STATUSES or attempt == MAX_RETRIES:
                return response
            time.sleep(_wait_seconds(response.headers.get("retry-after"), attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _queue(self, path: str, item: dict[str, Any]) -> None:
        with self._queue_lock:
            self._queued[path].append(item)
            if self._flush_pending:
                return
            self._flush_pending = True
        self._posts.submit(self._flush)

    def _flush(self) -> None:
        """Post everything queued so far: one request per endpoint (per BATCH_SIZE items)."""
        with self._queue_lock:
            queued = self._queued
            self._queued = {path: [] for path in queued}
            self._flush_pending = False
        for path, items in queued.items():
            for start in range(0, len(items), BATCH_SIZE):
                with suppress(self._http_error):
                    self._request(path, items[start:start + BATCH_SIZE])

    def log(self, level: int, message: str) -> None:
        """A log line of the run (sent in the background)."""
        if not self.id or self.finished:
            return
        self._queue("/logs/", {
            "name": f"tandem.{self.flow_name}", "level": level, "message": message,
            "timestamp": _now(), "flow_run_id": self.id})

    def emit(self, event: str, resource: dict[str, str], payload: dict[str, Any]) -> None:
        """An event related to the run (sent in the background, in order)."""
        if self.finished:
            return
        self._queue("/events", event_body(event, resource, payload, self.related()))

    def finish(self, state: str, message: str = "") -> None:
        """``COMPLETED``, ``FAILED``, ``CRASHED`` or ``CANCELLED``."""
        if self.finished or not self.id:
            return
        self.finished = True
        self._posts.shutdown(wait=True)  # the log lines and events first
        try:
            self._request(f"/flow_runs/{self.id}/set_state", {
                "state": {"type": state, "name": state.title(), "message": message},
                "force": True})
        except self._http_error:
            pass
        finally:
            self._client.close()


def _wait_seconds(retry_after: str | None, attempt: int) -> float:
    """Retry-After (seconds or an HTTP date) if given, else 1, 2, 4 ... s with jitter."""
    wait = None
    if retry_after:
        try:
            wait = float(retry_after)
        except ValueError:
            with suppress(TypeError, ValueError):
                when = email.utils.parsedate_to_datetime(retry_after)
                wait = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if wait is None:
        wait = 2.0 ** attempt * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrets
    return min(max(wait, 0.0), MAX_WAIT_SECONDS)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


@contextmanager
def recorded_run(api_url: str | None, flow_name: str, parameters: dict[str, Any],
                 ) -> Iterator[RecordedRun | None]:
    """A :class:`RecordedRun` for the block (None without a server): Completed when the
    block ends, Crashed if it raises, Cancelled on Ctrl+C or SIGTERM. The block may set
    another final state itself (``run.finish("FAILED", ...)``)."""
    if not api_url:
        yield None
        return
    run = RecordedRun(api_url, flow_name, parameters).start()
    try:
        yield run
    except KeyboardInterrupt:
        run.finish("CANCELLED", "Stopped by the user (Ctrl+C or SIGTERM).")
        raise
    except BaseException as exc:
        run.finish("CRASHED", f"{type(exc).__name__}: {_reason(exc)}")
        raise
    else:
        run.finish("COMPLETED")
