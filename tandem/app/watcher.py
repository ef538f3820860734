"""The inbox watcher: a complete file in ``inbox/<clinic>/`` becomes a Prefect event.

Clinics (or their sync tool) write into ``TANDEM_HOME/inbox/<clinic_id>/``. A file is
acted on only once it is complete: names ending ``.part`` (or ``.tmp``, ``.partial``,
hidden files) are ignored, so the safe way to deliver is *upload to ``x.csv.part``, then
rename to ``x.csv``*; and a file must keep the same size and mtime for
``TANDEM_INBOX_STABLE_SECONDS`` (copying tools that write in place are caught by this).

A complete file is moved out of the inbox into intake (tandem.pipeline.intake), then the
``tandem.file.received`` event is emitted; its deployment trigger starts ``ingest``.

Events can be lost: emitted while the Prefect server is down or restarting, or accepted
by a server killed before its trigger acted. The file then waits in ``intake/pending``,
and the watcher sends its clinic's event again

* when it starts, and when the Prefect server answers again after an outage;
* when a file has waited ``TANDEM_INTAKE_RETRY_SECONDS`` since its clinic's last event.

It also sends ``tandem.marts.stale`` (which starts ``aggregate``) at those moments if
the warehouse holds a batch the published marts lack (the batch's own event was lost),
and ``tandem.marts.late`` (a notification, flows/notify.py) once when the marts have
lacked new batches for ``TANDEM_NOTIFY_MARTS_LATE_MINUTES``.
An extra event is harmless: claims are atomic, and a current snapshot is not re-published.
The nightly sweep stays the last safety net.

Run with ``python -m tandem.app.watcher`` (``tandem serve`` does), with PREFECT_API_URL set.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tandem.core.settings import Settings, get_settings
from tandem.pipeline import intake

if TYPE_CHECKING:
    from tandem.core.published import MartsLag

log = logging.getLogger("tandem.app.watcher")

# How often the Prefect server is asked whether it answers, and waiting work looked at.
HEALTH_SECONDS = 2.0
RECHECK_SECONDS = 5.0


class InboxWatcher:
    """Remembers each candidate's (size, mtime) to tell when it stopped changing, and
    when each clinic's last event was sent (to send it again if its files still wait)."""

    def __init__(self, settings: Settings, stable_seconds: float,
                 retry_seconds: float = 120.0) -> None:
        self.settings = settings
        self.stable_seconds = stable_seconds
        self.retry_seconds = retry_seconds
        self._seen: dict[Path, tuple[tuple[int, int], float]] = {}
        self._last_event: dict[str, float] = {}  # clinic -> Unix time of its last event
        self._unpublished: int | None = None  # newest batch not in the marts, last look
        # since when (monotonic) the marts have lacked a batch, and the published batch
        # that was last reported late (reported once until a publish catches up)
        self._behind_since: float | None = None
        self._late_told: int | None = None
        self.late_seconds = settings.notify_marts_late_minutes * 60
        self._next_late = 0.0
        self._server_up: bool | None = None
        self._next_health = self._next_recheck = self._next_marts = 0.0

    def ensure_clinic_folders(self) -> list[str]:
        """An inbox folder for every clinic that has a contract."""
        from tandem.core.contracts import load_clinic_contracts

        try:
            clinics = sorted(load_clinic_contracts(self.settings))
        except Exception:  # noqa: BLE001 - a broken contract must not stop the watcher
            log.exception("could not read clinic contracts")
            clinics = []
        for clinic in clinics:
            if intake.valid_clinic_id(clinic):
                (self.settings.inbox_dir / clinic).mkdir(parents=True, exist_ok=True)
        return clinics

    def scan(self) -> list[intake.Landed]:
        """Receive every file that has been stable long enough; emit an event for each."""
        now = time.monotonic()
        landed: list[intake.Landed] = []
        present: set[Path] = set()
        inbox = self.settings.inbox_dir
        if not inbox.is_dir():
            return landed
        for folder in sorted(p for p in inbox.iterdir() if p.is_dir() and not p.is_symlink()):
            if not intake.valid_clinic_id(folder.name):
                continue
            for entry in intake.inbox_entries(folder):
                f = entry.path
                if entry.refused is not None:  # a link or a special file: never opened
                    self._refuse(folder.name, f, entry.refused)
                    continue
                present.add(f)
                key = (entry.size, entry.mtime_ns)
                prev = self._seen.get(f)
                if prev is None or prev[0] != key:
                    self._seen[f] = (key, now)
                    if self.stable_seconds > 0:
                        continue
                elif now - prev[1] < self.stable_seconds:
                    continue
                landed_file = self._receive(folder.name, f)
                if landed_file is not None:
                    landed.append(landed_file)
                    present.discard(f)
        self._seen = {p: v for p, v in self._seen.items() if p in present}
        return landed

    def _refuse(self, clinic: str, path: Path, reason: str) -> None:
        where = intake.refuse_entry(self.settings, clinic, path, reason)
        log.warning("refused %s/%s: it %s (moved to %s, not read)", clinic, path.name, reason,
                    where.parent if where else "nowhere: it could not be moved")

    def _receive(self, clinic: str, path: Path) -> intake.Landed | None:
        from flows.events import emit_file_received
        from tandem.core.safe_files import FileRefused

        try:
            landed = intake.receive_file(self.settings, clinic, path, "inbox")
        except FileRefused as exc:
            if exc.reason == "does not exist":
                return None
            log.warning("refused %s/%s: it %s", clinic, path.name, exc.reason)
            if intake.refusal_left_in_inbox(path):
                self._refuse(clinic, path, exc.reason)
            return None
        except FileNotFoundError:
            return None
        except OSError:
            log.exception("could not receive %s", path)
            return None
        ok = emit_file_received(clinic, str(landed.path), landed.source_name, landed.sha256,
                                landed.size_bytes, "inbox")
        self._last_event[clinic] = time.time()
        log.info("received %s/%s (%d bytes, sha256 %s)%s", clinic, landed.source_name,
                 landed.size_bytes, landed.sha256[:12], "" if ok else "; event NOT emitted")
        return landed

    # --- recovery of lost events ---------------------------------------------------------

    def resend_waiting(self, min_age: float) -> list[str]:
        """Send ``tandem.file.received`` again for clinics whose files wait in pending.

        A clinic qualifies when its oldest waiting file was received at least ``min_age``
        seconds ago and no event was sent for it since then. One event per clinic is
        enough: its ingest run claims every file the clinic has waiting. A clinic with
        files in ``claimed/`` is skipped: its run is still loading and takes the waiting
        files next, in arrival order (a run that fails puts its claims back first).
        """
        from flows.events import emit_file_received

        now = time.time()
        sent = []
        for clinic in intake.clinics_in(self.settings, "pending"):
            waiting = intake.pending(self.settings, clinic)
            if not waiting or intake.pending(self.settings, clinic, "claimed"):
                continue
            oldest = waiting[0]  # tokens sort by receipt time
            if (now - intake.received_at(oldest) < min_age
                    or now - self._last_event.get(clinic, 0.0) < min_age):
                continue
            ok = emit_file_received(clinic, str(oldest.path), oldest.source_name,
                                    oldest.sha256, oldest.size_bytes, oldest.trigger)
            self._last_event[clinic] = now
            log.warning("%d file(s) of %s waiting in intake/pending; event sent again%s",
                        len(waiting), clinic, "" if ok else " (NOT emitted)")
            sent.append(clinic)
        return sent

    def check_marts(self, now: bool) -> bool:
        """Send ``tandem.marts.stale`` if the marts lack a batch of the warehouse.

        With ``now`` (start-up, the server back) at once; otherwise only if the same
        newest batch was already unpublished at the previous look, so a publish that is
        merely under way (quiet period, maximum wait) is left to finish.
        """
        from flows.events import emit_marts_stale

        state = batches_state(self.settings)
        if state is None:  # the lake could not be read just now: look again later
            return False
        behind = (state.latest, state.missing) if state.behind else None
        previous, self._unpublished = self._unpublished, behind
        if behind is None or (not now and behind != previous):
            return False
        ok = emit_marts_stale(state.latest, state.in_marts)
        log.warning("the marts lack %d batch(es) of the warehouse (newest %d; the marts' "
                    "newest %d); tandem.marts.stale sent%s", state.missing, state.latest,
                    state.in_marts, "" if ok else " (NOT emitted)")
        return True

    def check_marts_late(self, now: float | None = None) -> bool:
        """Send ``tandem.marts.late`` once the marts have lacked the warehouse's newest
        batches for ``late_seconds`` (counted from when this watcher first saw it)."""
        from flows.alerts import marts_late_event
        from flows.events import emit

        state = batches_state(self.settings)
        if state is None:
            return False
        latest, in_marts = state.latest, state.in_marts
        now = time.monotonic() if now is None else now
        if not state.behind:
            self._behind_since = self._late_told = None
            return False
        if self._behind_since is None:
            self._behind_since = now
        waited = now - self._behind_since
        if waited < self.late_seconds or self._late_told == in_marts:
            return False
        self._late_told = in_marts
        ok = emit(marts_late_event(latest, in_marts, waited / 60))
        log.warning("the marts have lacked batches after %d for %.0f minutes; tandem.marts.late "
                    "sent%s", in_marts, waited / 60, "" if ok else " (NOT emitted)")
        return True

    def recover(self) -> None:
        """Re-send the events of all waiting work (start-up, or the server is back)."""
        self.resend_waiting(0.0)
        self.check_marts(now=True)
        now = time.monotonic()
        self._next_recheck = now + RECHECK_SECONDS
        self._next_marts = now + self.retry_seconds

    def start(self) -> None:
        """At start-up: files left waiting in intake, batches left unpublished."""
        self._server_up = server_answers()
        if not self._server_up:
            log.warning("the Prefect server does not answer yet; events wait in intake")
        self.recover()
        self._next_health = time.monotonic() + HEALTH_SECONDS

    def release_stranded(self) -> list[str]:
        """Files claimed by a flow run that has ended without finishing them (its process
        was killed, its worker died) go back to pending; their clinic's event is sent again
        at once. Returns the clinics."""
        released = intake.stranded_claims(self.settings, run_has_ended)
        clinics = sorted({landed.clinic_id for landed in released})
        for clinic in clinics:
            log.warning("files of %s claimed by a run that ended without loading them are "
                        "back in intake/pending", clinic)
            self._last_event.pop(clinic, None)
        if clinics:
            self.resend_waiting(0.0)
        return clinics

    def look_after_waiting_work(self) -> None:
        """Called on every tick: notices the server coming back, retries old waiters."""
        now = time.monotonic()
        if now >= self._next_health:
            self._next_health = now + HEALTH_SECONDS
            up = server_answers()
            was_up, self._server_up = self._server_up, up
            if up and was_up is False:
                log.warning("the Prefect server answers again; re-sending waiting events")
                self.recover()
                return
            if not up and was_up:
                log.warning("the Prefect server does not answer; events wait in intake")
        if not self._server_up or now < self._next_recheck:
            return
        self._next_recheck = now + RECHECK_SECONDS
        self.release_stranded()
        self.resend_waiting(self.retry_seconds)
        if now >= self._next_marts:
            self._next_marts = now + self.retry_seconds
            self.check_marts(now=False)
        if now >= self._next_late:
            self._next_late = now + min(30.0, max(self.late_seconds / 4, RECHECK_SECONDS))
            self.check_marts_late(now)


_ENDED = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def run_has_ended(flow_run_id: str) -> bool:
    """True if Prefect says this flow run is over (in a final state), whatever its outcome.

    A run that could not be looked up (the server is away) counts as not ended: its claim
    is left alone until the next look."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return False
    try:
        r = httpx.get(f"{url.rstrip('/')}/flow_runs/{flow_run_id}", timeout=5)
    except httpx.HTTPError:
        return False
    if r.status_code == 404:
        return True  # a run the server does not know cannot finish the file
    if r.status_code != 200:
        return False
    state = (r.json().get("state") or {}).get("type")
    return state in _ENDED


def server_answers() -> bool:
    """True if the Prefect API (PREFECT_API_URL) answers its health check."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return False
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def batches_state(settings: Settings) -> MartsLag | None:
    """How far the published marts are behind the warehouse.

    None if the lake cannot be read just now (the next look tries again).
    """
    from tandem.core import published

    try:
        return published.marts_lag(settings)
    except Exception as exc:  # noqa: BLE001 - a check; it must never stop the watcher
        log.warning("could not compare the warehouse with the marts: %s", exc)
        return None


def run(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    """Watch the inboxes until ``stop`` is set (or the process is interrupted)."""
    import watchfiles

    settings = settings or get_settings()
    settings.ensure_dirs()
    watcher = InboxWatcher(settings, settings.inbox_stable_seconds, settings.intake_retry_seconds)
    clinics = watcher.ensure_clinic_folders()
    log.info("watching %s for %s", settings.inbox_dir, ", ".join(clinics) or "no clinics yet")
    watcher.scan()  # files that arrived while nobody watched
    watcher.start()  # files left waiting in intake, batches left unpublished
    tick = max(100, int(min(settings.inbox_stable_seconds, 1.0) * 500))
    last_contracts = 0.0
    for _changes in watchfiles.watch(settings.inbox_dir, debounce=100, step=50,
                                     rust_timeout=tick, yield_on_timeout=True,
                                     stop_event=stop, raise_interrupt=False):
        if time.monotonic() - last_contracts > 30:  # a clinic added while serving
            watcher.ensure_clinic_folders()
            last_contracts = time.monotonic()
        watcher.scan()
        watcher.look_after_waiting_work()


def main() -> None:
    import signal

    from tandem.core.runtime import prepare_environment

    prepare_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every health check
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(stop=stop)
    finally:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)  # send what is queued before exiting


if __name__ == "__main__":  # pragma: no cover
    main()
