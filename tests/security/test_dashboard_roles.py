"""Dashboard roles hold on every page and every download; row-level access is audited."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from dashboards import auth
from tests.conftest import REPO_ROOT

DASH = REPO_ROOT / "dashboards"
PAGES = DASH / "views"


def _page_lists() -> dict[str, list[str]]:
    """DIRECTOR_PAGES, QUALITY_PAGES, ADMIN_PAGES from dashboards/main.py (without running it)."""
    tree = ast.parse((DASH / "main.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id.endswith("_PAGES"):
            out[node.targets[0].id] = [e.elts[0].value for e in node.value.elts]
    return out


def _page_context_roles(path: Path) -> tuple[str, ...] | None:
    """The roles a page passes to ui.page_context (None: the default, every role)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "page_context":
            for kw in node.keywords:
                if kw.arg == "roles":
                    return tuple(ast.literal_eval(kw.value))
            return None
    source = path.read_text()
    if 'role != "admin"' in source and "st.stop()" in source:
        return ("admin",)  # its own admin-only guard (checked by running it below)
    raise AssertionError(f"{path.name} never calls ui.page_context: no sign-in or role check")


def test_every_page_checks_sign_in_and_role():
    lists = _page_lists()
    assert lists.get("QUALITY_PAGES") and lists.get("DIRECTOR_PAGES")
    for name in [p for pages in lists.values() for p in pages]:
        _page_context_roles(PAGES / name)  # raises if a page has no check
    for name in lists["QUALITY_PAGES"]:
        roles = _page_context_roles(PAGES / name)
        assert roles is not None and "director" not in roles, f"{name} is open to directors"
    for name in lists.get("ADMIN_PAGES", []):
        roles = _page_context_roles(PAGES / name)
        assert roles == ("admin",), f"{name} is not admin-only: {roles}"


def test_every_page_file_is_reachable_only_through_a_role_list():
    listed = {p for pages in _page_lists().values() for p in pages}
    assert {p.name for p in PAGES.glob("*.py")} <= listed | {"__init__.py"}


def test_every_download_writes_an_audit_record():
    """st.download_button anywhere must pass on_click=auth.audit (ui.download does)."""
    missing = []
    for path in DASH.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "download_button":
                kw = {k.arg: k.value for k in node.keywords}
                target = kw.get("on_click")
                if not (isinstance(target, ast.Attribute) and target.attr == "audit"):
                    missing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert missing == [], f"downloads without an audit record: {missing}"


@pytest.mark.parametrize("page", ["loads.py", "lineage.py", "validation.py", "completeness.py",
                                  "users.py"])
@pytest.mark.parametrize("role", [None, "director"])
def test_a_director_or_a_stranger_is_stopped_on_row_level_pages(tandem_home, page, role):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGES / page), default_timeout=60)
    if role:
        at.session_state["user"] = auth.User(username="d", role=role, clinics=("northside",))
    at.run()
    messages = [e.value for e in at.error] + [w.value for w in at.warning]
    assert any("may not see" in m or "sign in" in m for m in messages), messages
    assert not at.dataframe and not at.get("download_button")


def test_the_audit_log_records_who_viewed_what_and_when(tandem_home):
    user = auth.User(username="q1", role="quality")
    auth.audit(tandem_home, user, "download", what="audit_quarantine", rows=3)
    import json

    [line] = (tandem_home.home_dir / "audit" / "access.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["user"] == "q1" and record["role"] == "quality"
    assert record["action"] == "download" and record["what"] == "audit_quarantine"
    assert record["at"].startswith("20")
