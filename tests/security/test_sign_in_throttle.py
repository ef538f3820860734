"""Sign-in throttling (issue 17, item 9): per user and per address, a growing delay, then a
temporary lock-out that holds even for the right password; every step audited.

Before: 25 wrong passwords in 40 s, then the right one signed in.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from streamlit.testing.v1 import AppTest

from dashboards import auth
from tests.dashboards.conftest import APP


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _audit(settings) -> list[dict]:
    path = settings.audit_dir / "access.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def dana(tandem_home):
    auth.add_user(tandem_home, "dana", "correct horse", "director", ["northside"])
    return tandem_home


def test_the_issue_scenario_through_the_form_25_wrong_then_right_is_refused(dana):
    """Through the real sign-in form (AppTest), as fast as it can be typed."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input[0].input("dana")
    for _ in range(25):
        at.text_input[1].input("wrong password")
        at.button[0].click().run()
    at.text_input[1].input("correct horse")
    at.button[0].click().run()
    assert not at.exception
    assert "user" not in at.session_state or at.session_state["user"] is None
    assert "Too many failed sign-ins" in at.error[0].value
    actions = [x["action"] for x in _audit(dana)]
    assert "sign_in" not in actions
    assert actions.count("sign_in_failed") <= 4  # the rest were refused unchecked
    assert "sign_in_throttled" in actions


def test_delays_grow_then_a_lockout_holds_even_for_the_right_password(dana):
    clock = Clock()
    throttle = auth.SignInThrottle(dana, clock=clock)

    def attempt(password: str, address: str = "203.0.113.7") -> auth.SignIn:
        return auth.sign_in(dana, "dana", password, address, throttle=throttle)

    for _ in range(3):  # a person mistyping is not slowed down
        assert attempt("wrong").message == "Unknown user name or wrong password."
    delays = []
    for _ in range(3, 10):
        refused = attempt("correct horse")  # too soon: refused without checking
        assert refused.user is None and refused.refused
        wait, _ = throttle.check(auth._keys("dana", "203.0.113.7"))
        delays.append(round(wait))
        clock.t += wait + 0.1
        assert not attempt("wrong").refused
    assert delays == [1, 2, 4, 8, 16, 32, 60]
    # 10 failures: locked for 15 minutes, the right password included
    locked = attempt("correct horse")
    assert locked.refused and "locked for 15 minutes" in locked.message
    clock.t += 14 * 60
    assert attempt("correct horse").refused
    clock.t += 61 + 60
    ok = attempt("correct horse")
    assert ok.user is not None and ok.user.username == "dana"
    assert throttle.check(auth._keys("dana", "198.51.100.1")) == (0.0, False)  # reset
    actions = [x["action"] for x in _audit(dana)]
    assert actions.count("sign_in_failed") == 10
    assert actions.count("sign_in_lockout") == 1
    assert actions.count("sign_in_locked") == 2 and "sign_in_throttled" in actions
    lockout = next(x for x in _audit(dana) if x["action"] == "sign_in_lockout")
    assert lockout["username"] == "dana" and lockout["address"] == "203.0.113.7"


def test_one_address_spraying_user_names_is_locked_out(dana):
    clock = Clock()
    throttle = auth.SignInThrottle(dana, clock=clock)
    for i in range(30):
        r = auth.sign_in(dana, f"user{i}", "guess", "203.0.113.9", throttle=throttle)
        if r.refused:  # the address's delay: wait it out, as a patient attacker would
            clock.t += throttle.check(["addr:203.0.113.9"])[0] + 0.1
            r = auth.sign_in(dana, f"user{i}", "guess", "203.0.113.9", throttle=throttle)
        assert not r.refused
    # 30 failures from one address: the right password for a real user is refused there ...
    refused = auth.sign_in(dana, "dana", "correct horse", "203.0.113.9", throttle=throttle)
    assert refused.refused and "locked" in refused.message
    # ... and accepted from elsewhere
    assert auth.sign_in(dana, "dana", "correct horse", "198.51.100.2",
                        throttle=throttle).user is not None
    assert stat.S_IMODE(os.stat(throttle.path).st_mode) == 0o600


def test_throttle_state_is_shared_and_bounded(dana):
    clock = Clock()
    first, second = auth.SignInThrottle(dana, clock=clock), auth.SignInThrottle(dana,
                                                                                 clock=clock)
    for _ in range(4):
        first.failed(auth._keys("dana", None))
    assert second.check(auth._keys("dana", None))[0] > 0  # another session, same state
    clock.t += 3600
    assert second.check(auth._keys("dana", None)) == (0.0, False)  # forgotten
