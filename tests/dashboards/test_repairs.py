"""The quality pages' repairs, against a real Prefect server with the repair deployments
registered: a button makes a flow run of the right deployment with the right parameters,
the request is audited, directors never see the buttons, and without a server the page
says so in a sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from dashboards import auth
from tests.conftest import REPO_ROOT
from tests.dashboards.conftest import DIRECTOR, QUALITY, app_as
from tests.flows.servers import free_port, prefect_server

pytestmark = pytest.mark.slow

REGISTER = """
from flows.deployments import deployment_specs
for fl, kw in deployment_specs():
    if fl.name in ("reprocess", "republish"):
        print(fl.to_deployment(**kw).apply())
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """A Prefect server with the deployments reprocess/manual and republish/manual (as
    ``tandem serve`` registers them; nothing serves them, so their runs stay Scheduled)."""
    with prefect_server(tmp_path_factory.mktemp("prefect")) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TANDEM_"))}
        env.update(PREFECT_API_URL=url, PREFECT_HOME=str(tmp_path_factory.mktemp("client")),
                   PREFECT_LOGGING_LEVEL="WARNING", PYTHONPATH=str(REPO_ROOT),
                   TANDEM_HOME=str(tmp_path_factory.mktemp("home")))
        proc = subprocess.run([sys.executable, "-c", REGISTER], env=env, capture_output=True,
                              text=True, timeout=300, cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield url


def runs_of(url: str, flow: str) -> list[dict]:
    dep = httpx.get(f"{url}/deployments/name/{flow}/manual", timeout=10).json()
    return httpx.post(f"{url}/flow_runs/filter", timeout=10, json={
        "flow_runs": {"deployment_id": {"any_": [dep["id"]]}}}).json()


def audit_lines(settings) -> list[dict]:
    path = settings.audit_dir / "access.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_re_validate_asks_the_service_and_is_audited(marts, tandem_home, server, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", server)
    at = app_as(QUALITY, "loads")
    at.multiselect(key="rp_clinics").select("northside")
    at.multiselect(key="rp_reasons").select("therapist_on_roster")
    at.text_input(key="rp_batches").input("3, 5")
    at.button(key="rp_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [ok] = [s.value for s in at.success]
    assert "reprocess/manual" in ok and "Open it in Prefect" in ok

    [run] = runs_of(server, "reprocess")
    assert run["parameters"] == {"clinics": ["northside"], "batches": [3, 5],
                                 "reasons": ["therapist_on_roster"], "requested_by": "quinn"}
    assert "dashboard" in run["tags"] and run["name"] in ok
    assert run["state"]["type"] == "SCHEDULED"
    [line] = [x for x in audit_lines(tandem_home) if x["action"] == "request_reprocess"]
    assert (line["user"], line["role"], line["deployment"]) == ("quinn", "quality",
                                                                 "reprocess/manual")
    assert line["flow_run_id"] == run["id"] and line["parameters"] == run["parameters"]
    # The run stays listed with its state, read back from the server.
    table = at.dataframe[-1].value
    assert table["flow run"].tolist() == [run["name"]]
    assert table["state"].tolist() == ["Scheduled"]


def test_republish_as_of_a_date_asks_the_service(marts, tandem_home, server, monkeypatch):
    import datetime as dt

    monkeypatch.setenv("PREFECT_API_URL", server)
    at = app_as(auth.User("ada", "admin", "Ada Admin", None), "loads")
    at.date_input(key="rb_as_of").set_value(dt.date(2025, 12, 31))
    at.button(key="rb_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [run] = runs_of(server, "republish")
    assert run["parameters"] == {"as_of": "2025-12-31", "requested_by": "ada"}
    [line] = [x for x in audit_lines(tandem_home) if x["action"] == "request_republish"]
    assert line["flow_run_id"] == run["id"] and line["role"] == "admin"


def test_a_director_never_sees_the_repair_buttons(marts, server, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", server)
    with pytest.raises(ValueError):  # not among a director's pages
        app_as(DIRECTOR).switch_page("views/loads.py")
    at = AppTest.from_file(str(REPO_ROOT / "dashboards" / "views" / "loads.py"),
                           default_timeout=60)
    at.session_state["user"] = DIRECTOR
    at.run()
    assert "may not see" in at.error[0].value
    assert not at.button and "Repairs" not in [s.value for s in at.subheader]

    def panel_for_a_director():
        import datetime as dt

        from dashboards import repairs
        from tandem.core.settings import get_settings
        from tests.dashboards.conftest import DIRECTOR

        repairs.panel(get_settings(), DIRECTOR, ["northside"], ["r"], dt.date(2026, 1, 1))

    direct = AppTest.from_function(panel_for_a_director, default_timeout=60).run()
    assert not direct.exception and not direct.button and not direct.subheader


def test_without_a_server_the_page_says_so(marts, tandem_home, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tandem_home.home_dir / "no-profiles.toml"))
    at = app_as(QUALITY, "loads")
    assert any("No Prefect server is configured" in i.value for i in at.info)
    assert not [b for b in at.button if b.key in ("rp_go", "rb_go")]


def test_a_server_that_is_down_is_a_sentence_and_audited(marts, tandem_home, monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    at = app_as(QUALITY, "loads")
    at.button(key="rp_go").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert "does not answer" in error and "Nothing was requested" in error
    [line] = [x for x in audit_lines(tandem_home) if x["action"] == "request_reprocess"]
    assert line["flow_run_id"] is None and "does not answer" in line["error"]
