"""Dashboard fixtures: a published synthetic snapshot (built once) and signed-in AppTests."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.auth import User
from tandem.core import published
from tandem.core.settings import Settings
from tests.dashboards.synthetic import AS_OF, build_snapshot_marts

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "main.py")
DIRECTOR = User("dana", "director", "Dana Director", ("northside",))
QUALITY = User("quinn", "quality", "Quinn Quality", None)
ADMIN = User("ada", "admin", "Ada Admin", None)

_MARTS: dict[str, pl.DataFrame] = {}


@pytest.fixture
def marts(tandem_home: Settings) -> dict[str, pl.DataFrame]:
    """The synthetic marts (built once per session), published into this test's home."""
    if not _MARTS:
        _MARTS.update(build_snapshot_marts(tandem_home, n_clients=900))
    published.publish(_MARTS, tandem_home, meta={"as_of": AS_OF.isoformat()})
    return _MARTS


def app_as(user: User | None, page: str | None = None) -> AppTest:
    """Run the app signed in as ``user`` and switch to ``views/<page>.py``."""
    at = AppTest.from_file(APP, default_timeout=60)
    if user is not None:
        at.session_state["user"] = user
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def frames(at: AppTest) -> list[pl.DataFrame]:
    return [pl.from_pandas(d.value) for d in at.dataframe]
