"""Attacks on the standalone UI over HTTP: roles, CSRF, sessions after logout, throttling, headers.

The route walk discovers the routes from the app itself, so a route added later (e.g. the
Looker "keep" action) is covered as soon as it declares its permission with ``require``.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from guardian import audit
from guardian.settings import load_settings
from guardian.web.auth import ROLES, LoginThrottle, Permission, hash_password

PASSWORD = "a long enough password"
HASH = hash_password(PASSWORD)
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def users(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_HASH", HASH)
    monkeypatch.setenv("GUARDIAN_WEB__USERS", ",".join(f"{role}1:{role}:env:UI_HASH" for role in ROLES))


def _app():  # type: ignore[no-untyped-def]
    from guardian.web.app import create_app

    return create_app(load_settings())


def _login(client: TestClient, user: str, password: str = PASSWORD) -> str:
    response = client.post("/login", data={"username": user, "password": password, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get("/audit")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    return token.group(1)


def _call(client: TestClient, method: str, path: str, csrf: str | None) -> int:
    url = re.sub(r"\{[^}]+\}", "x", path)
    if method == "GET":
        return client.get(url, params={"dashboard_id": "1"}, follow_redirects=False).status_code
    data = {"dashboard_id": "1", "confirm": "1"}
    if csrf is not None:
        data["csrf"] = csrf
    return client.request(method, url, data=data, follow_redirects=False).status_code


def test_every_route_declares_a_permission_and_every_role_gets_exactly_it(users: None) -> None:
    from guardian.web.app import PUBLIC_ROUTES, route_permission

    app = _app()
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert any(m in STATE_CHANGING for r in routes for m in r.methods)
    for route in routes:
        if route.path in PUBLIC_ROUTES:
            continue
        assert route_permission(route) is not None, f"{route.path} declares no permission"
    for role, granted in ROLES.items():
        client = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
        csrf = _login(client, f"{role}1")
        for route in routes:
            needed = route_permission(route)
            if needed is None:
                continue
            for method in route.methods:
                status = _call(client, method, route.path, csrf)
                allowed = needed in granted or Permission.ADMIN in granted
                if allowed:
                    assert status not in (401, 403), (role, method, route.path, status)
                else:
                    assert status == 403, (role, method, route.path, status)


def test_a_viewer_cannot_restore_by_any_door(users: None) -> None:
    client = TestClient(_app(), base_url="https://testserver", raise_server_exceptions=False)
    csrf = _login(client, "viewer1")
    for path in ("/api/looker/restore", "/looker/restore"):
        assert client.post(path, data={"dashboard_id": "7", "confirm": "7", "csrf": csrf}).status_code == 403
        # An Authorization header no longer switches the CSRF check off for a cookie session.
        assert client.post(path, data={"dashboard_id": "7"}, headers={"Authorization": "Bearer x"}).status_code == 403
    assert not list(audit.iter_events(action_prefix="looker.restore"))


def test_csrf_is_needed_even_with_an_authorization_header(users: None) -> None:
    client = TestClient(_app(), base_url="https://testserver", raise_server_exceptions=False)
    csrf = _login(client, "operator1")
    forged = client.post(
        "/api/looker/restore", data={"dashboard_id": "7"}, headers={"Authorization": "Basic Zm9vOmJhcg=="}
    )
    assert forged.status_code == 403 and "CSRF" in forged.text
    ok = client.post("/api/looker/restore", data={"dashboard_id": "7"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code not in (401, 403)


def test_a_cookie_copied_before_logout_is_dead_after_it(users: None) -> None:
    client = TestClient(_app(), base_url="https://testserver")
    csrf = _login(client, "viewer1")
    stolen = dict(client.cookies)
    assert client.get("/api/overview").status_code == 200
    client.post("/logout", data={"csrf": csrf})
    thief = TestClient(client.app, base_url="https://testserver", cookies=stolen)
    assert thief.get("/api/overview").status_code == 401


def test_sessions_expire_server_side(users: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from guardian.store import get_store
    from guardian.store.schema import web_sessions

    client = TestClient(_app(), base_url="https://testserver")
    _login(client, "viewer1")
    assert client.get("/api/overview").status_code == 200
    with get_store().write() as conn:
        conn.execute(update(web_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.get("/api/overview").status_code == 401


def test_cookie_flags_and_security_headers(users: None) -> None:
    client = TestClient(_app(), base_url="https://testserver")
    response = client.post(
        "/login", data={"username": "viewer1", "password": PASSWORD, "next": "/"}, follow_redirects=False
    )
    cookie = response.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    page = client.get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_login_is_throttled_per_user_and_audited_with_the_address(users: None) -> None:
    client = TestClient(_app(), base_url="https://testserver")
    long_name = "viewer1" + "x" * 5000
    for _ in range(5):
        assert client.post("/login", data={"username": "viewer1", "password": "guess"}).status_code == 401
    blocked = client.post("/login", data={"username": "viewer1", "password": PASSWORD})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert client.get("/api/overview").status_code == 401  # the right password did not get in while blocked
    assert client.post("/login", data={"username": long_name[:200], "password": "g"}).status_code == 401
    events = list(audit.iter_events(action_prefix="web.login"))
    assert {e.outcome for e in events} == {"failed", "throttled"}
    assert all(e.after["client"] == "testclient" for e in events)
    assert max(len(e.target) for e in events) <= len("user:") + 64
    assert PASSWORD not in str([e.as_dict() for e in events])


def test_passwords_must_be_argon2_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_PLAIN", PASSWORD)
    monkeypatch.setenv("GUARDIAN_WEB__USERS", "p:admin:env:UI_PLAIN")
    client = TestClient(_app(), base_url="https://testserver", raise_server_exceptions=False)
    response = client.post("/login", data={"username": "p", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 500  # refused: a plain secret never logs anyone in
    assert client.get("/api/overview").status_code == 401


# Invariant: within any window, a user name gets at most `per_user` wrong guesses answered,
# and a client address at most `per_address`, whatever order users and addresses try.
class ThrottleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.throttle = LoginThrottle(3, 5, 60.0, clock=lambda: self.now)
        self.answered: list[tuple[float, str, str]] = []  # guesses that were checked, not refused
        self.per_user: list[tuple[float, str, str]] = []  # the same, minus those a good login forgave

    @rule(user=st.sampled_from(["ann", "bob", "cy"]), address=st.sampled_from(["10.0.0.1", "10.0.0.2"]))
    def guess(self, user: str, address: str) -> None:
        if self.throttle.retry_after(user, address) == 0:
            self.answered.append((self.now, user, address))
            self.per_user.append((self.now, user, address))
            self.throttle.failed(user, address)

    @rule(seconds=st.floats(min_value=0.5, max_value=40))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: bool(self.answered))
    @rule()
    def good_login_clears_only_the_user(self) -> None:
        _, user, _ = self.answered[-1]
        self.throttle.succeeded(user)
        self.per_user = [a for a in self.per_user if a[1] != user]

    @invariant()
    def bounded(self) -> None:
        recent = [a for a in self.answered if a[0] > self.now - 60.0]
        by_user = [a for a in self.per_user if a[0] > self.now - 60.0]
        for user in {a[1] for a in by_user}:
            assert sum(1 for a in by_user if a[1] == user) <= 3
        for address in {a[2] for a in recent}:
            # A good login clears the user's count but the address keeps its own.
            assert sum(1 for a in recent if a[2] == address) <= 5


ThrottleMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
test_login_throttle_bounds_guesses = ThrottleMachine.TestCase
