"""The inbox watcher: a complete file in ``inbox/<clinic>/`` becomes a Prefect event.

Clinics (or their sync tool) write into ``TANDEM_HOME/inbox/<clinic_id>/``. A file is
acted on only once it is complete: names ending ``.part`` (or ``.tmp``, ``.partial``,
hidden files) are ignored, so the safe way to deliver is *upload to ``x.csv.part``, then
rename to ``x.csv``*; and a file must keep the same size and mtime for
``TANDEM_INBOX_STABLE_SECONDS`` (copying tools that write in place are caught by this).

A complete file is moved out of the inbox into intake (tandem.intake), then the
``tandem.file.received`` event is emitted; its deployment trigger starts ``ingest``. If
the event is lost, the file waits in intake and the nightly sweep loads it.

Run with ``python -m tandem.watcher`` (``tandem serve`` does), with PREFECT_API_URL set.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from tandem import intake
from tandem.settings import Settings, get_settings

log = logging.getLogger("tandem.watcher")


class InboxWatcher:
    """Remembers each candidate's (size, mtime) to tell when it stopped changing."""

    def __init__(self, settings: Settings, stable_seconds: float) -> None:
        self.settings = settings
        self.stable_seconds = stable_seconds
        self._seen: dict[Path, tuple[tuple[int, int], float]] = {}

    def ensure_clinic_folders(self) -> list[str]:
        """An inbox folder for every clinic that has a contract."""
        from tandem.contracts import load_clinic_contracts

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
        for folder in sorted(p for p in inbox.iterdir() if p.is_dir()):
            if not intake.valid_clinic_id(folder.name):
                continue
            for f in sorted(folder.iterdir()):
                if intake.is_partial(f) or not f.is_file():
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                present.add(f)
                key = (st.st_size, st.st_mtime_ns)
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

    def _receive(self, clinic: str, path: Path) -> intake.Landed | None:
        from flows.events import emit_file_received

        try:
            landed = intake.receive_file(self.settings, clinic, path, "inbox")
        except FileNotFoundError:
            return None
        except OSError:
            log.exception("could not receive %s", path)
            return None
        ok = emit_file_received(clinic, str(landed.path), landed.source_name, landed.sha256,
                                landed.size_bytes, "inbox")
        log.info("received %s/%s (%d bytes, sha256 %s)%s", clinic, landed.source_name,
                 landed.size_bytes, landed.sha256[:12], "" if ok else "; event NOT emitted")
        return landed


def run(settings: Settings | None = None, stop: threading.Event | None = None) -> None:
    """Watch the inboxes until ``stop`` is set (or the process is interrupted)."""
    import watchfiles

    settings = settings or get_settings()
    settings.ensure_dirs()
    cfg = intake.orchestration_settings()
    watcher = InboxWatcher(settings, cfg.inbox_stable_seconds)
    clinics = watcher.ensure_clinic_folders()
    log.info("watching %s for %s", settings.inbox_dir, ", ".join(clinics) or "no clinics yet")
    watcher.scan()  # files that arrived while nobody watched
    tick = max(100, int(min(cfg.inbox_stable_seconds, 1.0) * 500))
    last_contracts = 0.0
    for _changes in watchfiles.watch(settings.inbox_dir, debounce=100, step=50,
                                     rust_timeout=tick, yield_on_timeout=True,
                                     stop_event=stop, raise_interrupt=False):
        if time.monotonic() - last_contracts > 30:  # a clinic added while serving
            watcher.ensure_clinic_folders()
            last_contracts = time.monotonic()
        watcher.scan()


def main() -> None:
    import signal

    from tandem.cli import prepare_environment

    prepare_environment()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run(stop=stop)
    finally:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)  # send what is queued before exiting


if __name__ == "__main__":  # pragma: no cover
    main()
