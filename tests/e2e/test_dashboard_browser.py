"""End to end: start `streamlit run dashboards/app.py` on a free port with a prepared
TANDEM_HOME, drive it in headless system Chromium with Playwright, sign in as a director and
as a quality user, and save a screenshot of every page into docs/screenshots/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dashboards import auth
from tandem.core.settings import Settings
from tests.dashboards.synthetic import publish_synthetic

CHROMIUM = Path(os.environ.get("TANDEM_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# Off-track last: the test then reads what a director is told there.
DIRECTOR_PAGES = ["Overview", "Collaborative practices", "Alliance", "Therapists",
                  "Effect sizes", "Outcome definitions", "Off-track episodes"]
QUALITY_PAGES = ["Loads and quarantine", "Validation history", "Lineage", "Completeness",
                 "Off-track episodes"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="system Chromium not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tandem_home: Settings):
    """The dashboard as a real server; killed (process group) at the end."""
    publish_synthetic(tandem_home, n_clients=900)
    auth.add_user(tandem_home, "director", "director-pass", "director", ["northside"],
                  "Dana Director")
    auth.add_user(tandem_home, "quality", "quality-pass", "quality", None, "Quinn Quality")
    port = _free_port()
    env = {**os.environ, "TANDEM_HOME": str(tandem_home.home_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "dashboards" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("the dashboard did not start")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _settle(page) -> None:
    """Wait until the script run is over and the charts are drawn."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    # Charts and tables load their code lazily and show a skeleton until drawn.
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0",
        timeout=60_000)
    # Then every chart and table must actually be drawn (their code loads lazily; on a busy
    # machine a grey placeholder can stay for seconds after the skeletons are gone).
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"]')]
                   .every(e => e.querySelector('svg.marks, canvas.marks'))
              && [...document.querySelectorAll('[data-testid="stDataFrame"]')]
                   .every(e => e.querySelector('canvas') || e.closest('details:not([open])'))""",
        timeout=60_000)
    page.wait_for_timeout(1500)


def _sign_in(page, url: str, user: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for(timeout=60_000)
    _settle(page)


def _shoot(page, title: str, prefix: str) -> Path:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    _settle(page)
    assert page.get_by_test_id("stException").count() == 0, f"exception on {title}"
    path = SHOTS / f"{prefix}-{title.lower().replace(' ', '-')}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_director_and_quality_pages_in_chromium(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 3000})
            _sign_in(page, server, "director", "director-pass")
            shots = [_shoot(page, t, "director") for t in DIRECTOR_PAGES]
            nav = page.get_by_test_id("stSidebarNav").inner_text()
            assert "Loads and quarantine" not in nav  # directors have no quality pages
            assert page.get_by_text("The list of episodes is for the quality team").count() == 1

            page = browser.new_page(viewport={"width": 1400, "height": 3000})
            _sign_in(page, server, "quality", "quality-pass")
            shots += [_shoot(page, t, "quality") for t in QUALITY_PAGES]
        finally:
            browser.close()
    assert all(s.stat().st_size > 10_000 for s in shots)
