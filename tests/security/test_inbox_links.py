"""Links and special files in an inbox are refused, never read (issue 17, item 6).

Before: ``ln -s /etc/passwd inbox/northside/passwd.csv`` kept a copy of /etc/passwd under
``received/``, and under ``tandem serve`` a link to a CSV outside the inbox was loaded as
the clinic's data (the watcher and the sweep used ``is_file()``, which follows links).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tandem.core.safe_files import FileRefused
from tandem.core.settings import Settings
from tandem.pipeline import intake
from tests.conftest import HEADER, canonical_rows


@pytest.fixture
def inbox(tandem_home: Settings, tmp_path: Path) -> dict[str, Path]:
    outside = tmp_path / "outside" / "other-clinic.csv"
    outside.parent.mkdir()
    outside.write_text(HEADER + canonical_rows("SECRET-1", "T01", "2025-03-02", 1, "ORS",
                                               [5, 6, 7, 8]))
    folder = tandem_home.inbox_dir / "northside"
    folder.mkdir(parents=True)
    (folder / "passwd.csv").symlink_to("/etc/passwd")
    (folder / "linked.csv").symlink_to(outside)
    os.mkfifo(folder / "pipe.csv")
    good = folder / "feb.csv"
    good.write_text(HEADER + canonical_rows("C1", "T01", "2025-03-02", 1, "ORS", [5, 6, 7, 8]))
    return {"outside": outside, "folder": folder, "good": good}


def _refused(settings: Settings) -> dict[str, str]:
    base = intake.intake_dir(settings, "refused", "northside")
    out = {}
    for folder in base.iterdir():
        meta = json.loads((folder / intake.META).read_text())
        out[meta["source_name"]] = meta["reason"]
        entry = folder / meta["source_name"]
        assert os.path.lexists(entry)
    return out


def _assert_only_the_file_landed(settings: Settings, inbox: dict, landed: list) -> None:
    assert [x.source_name for x in landed] == ["feb.csv"]
    assert [w.source_name for w in intake.pending(settings, "northside")] == ["feb.csv"]
    refused = _refused(settings)
    assert set(refused) == {"passwd.csv", "linked.csv", "pipe.csv"}
    assert "symbolic link" in refused["passwd.csv"] and "named pipe" in refused["pipe.csv"]
    assert list(inbox["folder"].iterdir()) == []  # nothing left to look at again
    assert inbox["outside"].exists()  # the link's target is untouched
    kept = [p for p in settings.home_dir.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not any(b"SECRET-1" in p.read_bytes() or b"root:" in p.read_bytes()
                   for p in kept if p.stat().st_size < 10_000_000)


def test_the_sweep_refuses_links_and_pipes_in_an_inbox(tandem_home, inbox):
    from flows.sweep import receive_inbox

    landed = receive_inbox(tandem_home, 0, "sweep")
    _assert_only_the_file_landed(tandem_home, inbox, landed)


def test_the_watcher_refuses_links_and_pipes_in_an_inbox(tandem_home, inbox, monkeypatch):
    import flows.events
    from tandem.app.watcher import InboxWatcher

    sent = []
    monkeypatch.setattr(flows.events, "emit_file_received",
                        lambda *args, **kw: sent.append(args) or True)
    landed = InboxWatcher(tandem_home, stable_seconds=0).scan()
    _assert_only_the_file_landed(tandem_home, inbox, landed)
    assert len(sent) == 1 and sent[0][2] == "feb.csv"


def test_receive_file_never_opens_a_link_or_a_pipe(tandem_home, inbox):
    for name, words in (("passwd.csv", "symbolic link"), ("pipe.csv", "named pipe")):
        with pytest.raises(FileRefused, match=words):
            intake.receive_file(tandem_home, "northside", inbox["folder"] / name, "inbox")
    assert intake.pending(tandem_home, "northside") == []
