"""The command line's Prefect recorder against an HTTP server that answers like a busy
Prefect (503 while its database is locked) and counts what it is sent."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tandem.app import prefect_api
from tandem.app.prefect_api import PrefectUnreachable, RecordedRun


class Receiver:
    """A real HTTP server: the first ``busy`` requests to each path get 503, then 200."""

    def __init__(self, busy: int = 0, retry_after: str | None = "0") -> None:
        self.busy = busy
        self.retry_after = retry_after
        self.requests: Counter[str] = Counter()
        self.bodies: dict[str, list] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                path = self.path.removeprefix("/api")
                owner.requests[path] += 1
                if owner.requests[path] <= owner.busy:
                    self.send_response(503)
                    if owner.retry_after is not None:
                        self.send_header("Retry-After", owner.retry_after)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                owner.bodies.setdefault(path, []).append(body)
                out = json.dumps({"id": "r1", "name": "quiet-otter"}).encode()
                self.send_response(201)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver(request) -> Iterator[Receiver]:
    r = Receiver(**getattr(request, "param", {}))
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.mark.parametrize("receiver", [{"busy": 2}], indirect=True)
def test_a_busy_server_is_asked_again_until_it_answers(receiver):
    run = RecordedRun(receiver.url, "ingest", {"paths": []}).start()
    run.log(20, "one")
    run.finish("COMPLETED")
    assert run.id == "r1"
    # two 503s, then the answer, on every endpoint
    assert receiver.requests["/flows/"] == 3 and receiver.requests["/flow_runs/"] == 3
    assert receiver.requests["/logs/"] == 3
    assert receiver.requests["/flow_runs/r1/set_state"] == 3
    assert receiver.bodies["/flow_runs/r1/set_state"][0]["state"]["type"] == "COMPLETED"


@pytest.mark.parametrize("receiver", [{"busy": 99}], indirect=True)
def test_a_server_that_stays_busy_stops_the_start_with_a_reason(receiver, monkeypatch):
    monkeypatch.setattr(prefect_api, "MAX_RETRIES", 2)
    with pytest.raises(PrefectUnreachable, match="does not answer.*503"):
        RecordedRun(receiver.url, "ingest", {}).start()
    assert receiver.requests["/flows/"] == 3


def test_a_refused_connection_fails_at_once():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    with pytest.raises(PrefectUnreachable):
        RecordedRun(url, "ingest", {}).start()


def test_many_log_lines_and_events_go_in_a_few_requests(receiver):
    run = RecordedRun(receiver.url, "ingest", {}).start()
    for i in range(1000):
        run.log(20, f"file {i}: loaded")
        run.emit("tandem.batch.loaded", {"prefect.resource.id": f"tandem.batch.{i}"}, {})
    run.finish("COMPLETED")
    logs = [line for body in receiver.bodies["/logs/"] for line in body]
    events = [e for body in receiver.bodies["/events"] for e in body]
    assert [line["message"] for line in logs] == [f"file {i}: loaded" for i in range(1000)]
    assert [e["resource"]["prefect.resource.id"] for e in events] == [
        f"tandem.batch.{i}" for i in range(1000)]
    # at most 1000/200 = 5 full batches per endpoint, plus the ones a flush caught early
    assert receiver.requests["/logs/"] <= 20 and receiver.requests["/events"] <= 20


def test_retry_after_is_honoured_in_seconds_and_as_a_date():
    assert prefect_api._wait_seconds("3", 0) == 3.0
    assert prefect_api._wait_seconds("600", 0) == prefect_api.MAX_WAIT_SECONDS
    assert prefect_api._wait_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 2) == 0.0
    assert 0.8 <= prefect_api._wait_seconds(None, 0) <= 1.2
