"""Real servers for tests: a Prefect server, an SMTP server and an HTTP receiver.

* :func:`prefect_server` starts ``prefect server start`` (SQLite, its own PREFECT_HOME, a
  free loopback port, services on: automations and their notifications run) in a session
  of its own, and kills that session at the end;
* :class:`Inbox` is an aiosmtpd server plus a threaded HTTP server that keep every e-mail
  and every posted body, to read what arrived.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 240) -> Iterator[str]:
    """A running Prefect server; yields its API URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_UI_ENABLED="false")
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                             "127.0.0.1", "--port", str(port), "--no-ui"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                tail = (home / "server.log").read_text()[-3000:]
                raise RuntimeError(f"the Prefect server exited: {tail}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start in time")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@dataclass
class Message:
    kind: str  # "email" | "http"
    to: list[str]
    subject: str
    body: str
    path: str = ""


@dataclass
class Inbox:
    """An SMTP server and an HTTP receiver on loopback; ``messages`` is what arrived."""

    smtp_port: int = field(default_factory=free_port)
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        from aiosmtpd.controller import Controller

        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802, ARG002
                mail = message_from_bytes(envelope.original_content or envelope.content,
                                          policy=policy.default)
                part = mail.get_body(preferencelist=("plain", "html"))
                inbox.messages.append(Message("email", list(envelope.rcpt_tos),
                                              str(mail["subject"]), part.get_content()))
                return "250 OK"

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                import json

                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                text = json.loads(body).get("text", "")
                subject, _, rest = text.partition("\n")
                inbox.messages.append(Message("http", [], subject.strip("*"), rest, self.path))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._smtp = Controller(Handler(), hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.http_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/services/T000/B000/tandem-secret"

    def wait_for(self, check: Callable[[Message], bool], count: int = 1,
                 timeout: float = 60) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in list(self.messages) if check(m)]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(f"expected {count} message(s), got: {self.messages}")

    def close(self) -> None:
        self._smtp.stop()
        self._http.shutdown()
