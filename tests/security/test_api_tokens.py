"""The batch endpoint: a valid per-clinic token or nothing; no path from a request escapes."""

from __future__ import annotations

import pytest
from fastapi import testclient

from tandem.app import api
from tandem.core.settings import Settings

BODY = b"clinic_id,client_id,therapist_id,session_date,session_number,instrument,item,score\n"


@pytest.fixture
def client(tandem_home: Settings, monkeypatch):
    # The event to Prefect is not under test here (and would start a Prefect server).
    monkeypatch.setattr("flows.events.emit_file_received", lambda *a, **k: True)
    tokens = {c: api.issue_token(tandem_home, c) for c in ("northside", "southside")}
    return testclient.TestClient(api.create_app(tandem_home)), tokens, tandem_home


def _post(c, clinic: str, token: str | None, filename: str = "a.csv", body: bytes = BODY):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return c.post(f"/v1/clinics/{clinic}/batches", params={"filename": filename},
                  content=body, headers=headers)


def _landed(home: Settings) -> list:
    return [p for p in home.home_dir.rglob("*") if p.is_file() and p.read_bytes() == BODY]


@pytest.mark.parametrize("token", [None, "", "tdm_wrong", "Bearer", "x" * 5000])
def test_no_or_a_wrong_token_is_refused_and_nothing_is_stored(client, token):
    c, _, home = client
    assert _post(c, "northside", token).status_code == 401
    assert _landed(home) == []


def test_clinic_a_token_cannot_write_clinic_b_data(client):
    c, tokens, home = client
    assert _post(c, "southside", tokens["northside"]).status_code == 401
    assert _post(c, "unknown", tokens["northside"]).status_code == 401
    assert _landed(home) == []


def test_a_valid_token_lands_the_file_for_its_clinic_only(client):
    c, tokens, home = client
    r = _post(c, "northside", tokens["northside"])
    assert r.status_code == 202, r.text
    [path] = _landed(home)
    assert "northside" in path.relative_to(home.home_dir).parts
    assert "southside" not in path.relative_to(home.home_dir).parts


def test_a_revoked_token_stops_working(client):
    c, tokens, home = client
    api.revoke_token(home, "northside")
    assert _post(c, "northside", tokens["northside"]).status_code == 401


@pytest.mark.parametrize("filename", ["../../../escape.csv", "/etc/passwd", "..\\..\\x.csv",
                                      ".hidden", "a/../../b.csv", "\x00.csv", "é" * 300])
def test_a_file_name_from_the_request_never_leaves_the_data_directory(client, filename):
    c, tokens, home = client
    r = _post(c, "northside", tokens["northside"], filename=filename)
    assert r.status_code in (202, 400, 422), r.text
    for p in _landed(home):
        assert home.home_dir in p.resolve().parents
    assert not list(home.home_dir.parent.glob("escape*"))


@pytest.mark.parametrize("clinic", ["..", "..%2F..", "north side", "a" * 300])
def test_a_clinic_id_in_the_url_is_not_a_path(client, clinic):
    c, tokens, home = client
    assert _post(c, clinic, tokens["northside"]).status_code in (401, 404, 422)
    assert _landed(home) == []


def test_only_a_hash_of_each_token_is_kept(client):
    _, tokens, home = client
    stored = (home.secrets_dir / api.TOKENS_FILE).read_text()
    assert all(t not in stored for t in tokens.values())
    assert (home.secrets_dir / api.TOKENS_FILE).stat().st_mode & 0o777 == 0o600
