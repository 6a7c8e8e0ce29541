"""Attacks on the standalone UI over HTTP: roles, CSRF, sessions after logout, throttling, headers.

The route walk discovers the routes from the app itself, so a route added later (e.g. the
Looker "keep" action) is covered as soon as it declares its permission with ``require``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from guardian import audit
from guardian.settings import load_settings
from guardian.web.auth import ROLES, LoginThrottle, Permission, hash_password

PASSWORD = "a long enough password"
HASH = hash_password(PASSWORD)
T0 = datetime(2026, 12, 1, 12, tzinfo=UTC)
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


# Invariant: whichever of several guardian processes (restarted or not) answers, a login try is
# refused exactly when its user name has `per_user` failures, or its address `per_address`, within
# the window before it (a good login forgives the user name, not the address): the count is shared.
class ThrottleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from sqlalchemy import delete

        from guardian.store import get_store
        from guardian.store.schema import web_login_failures

        self.store = get_store(load_settings())
        with self.store.write() as conn:
            conn.execute(delete(web_login_failures))
        self.now = 0
        self.processes = [self._process(), self._process()]
        self.failures: list[tuple[int, str, str]] = []  # (t, user, address) of tries that were checked and failed
        self.forgiven: set[int] = set()  # indexes into failures a good login forgave for the user count

    def _process(self) -> LoginThrottle:
        return LoginThrottle(lambda: self.store, 3, 5, 60.0, clock=lambda: T0 + timedelta(seconds=self.now))

    def _expected_refused(self, user: str, address: str) -> bool:
        recent = [(i, f) for i, f in enumerate(self.failures) if f[0] > self.now - 60]
        by_user = sum(1 for i, f in recent if f[1] == user and i not in self.forgiven)
        by_address = sum(1 for _, f in recent if f[2] == address)
        return by_user >= 3 or by_address >= 5

    @rule(
        process=st.integers(0, 1),
        user=st.sampled_from(["ann", "bob", "cy"]),
        address=st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        good=st.booleans(),
    )
    def login(self, process: int, user: str, address: str, good: bool) -> None:
        expected = self._expected_refused(user, address)
        attempt = self.processes[process].begin(user, address)
        assert (attempt.retry_after > 0) is expected
        if expected:
            return
        if good:
            self.processes[process].succeeded(attempt)
            self.forgiven |= {i for i, f in enumerate(self.failures) if f[1] == user}
        else:
            self.failures.append((self.now, user, address))

    @rule(process=st.integers(0, 1))
    def restart(self, process: int) -> None:
        self.processes[process] = self._process()

    @rule(seconds=st.integers(min_value=1, max_value=40))
    def wait(self, seconds: int) -> None:
        self.now += seconds

    @invariant()
    def old_failures_are_pruned(self) -> None:
        from sqlalchemy import func, select

        from guardian.store.schema import web_login_failures

        with self.store.read() as conn:
            oldest = conn.execute(select(func.min(web_login_failures.c.failed_at))).scalar()
        newest_try = max((f[0] for f in self.failures), default=None)
        if oldest is not None and newest_try is not None:
            # Pruning happens at each try: nothing older than the window before the newest try is kept.
            assert oldest.replace(tzinfo=UTC) > T0 + timedelta(seconds=newest_try - 60)


ThrottleMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
test_login_throttle_is_shared_and_exact = ThrottleMachine.TestCase


def test_a_restarted_server_keeps_refusing(users: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from guardian.store import reset_stores

    monkeypatch.setenv("GUARDIAN_WEB__LOGIN_MAX_FAILURES", "2")  # fewer argon2 checks; the limit is what counts
    first = TestClient(_app(), base_url="https://testserver")
    for _ in range(2):
        assert first.post("/login", data={"username": "viewer1", "password": "guess"}).status_code == 401
    reset_stores()  # a new process: new app, new store engine, same database
    second = TestClient(_app(), base_url="https://testserver")
    blocked = second.post("/login", data={"username": "viewer1", "password": PASSWORD})
    assert blocked.status_code == 429 and 0 < int(blocked.headers["retry-after"]) <= 900


@pytest.mark.postgres
def test_two_server_processes_share_the_count(users: None, pg_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # One `guardian serve` process over real HTTP and one app in this process, on one PostgreSQL store.
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from guardian.store import get_store

    monkeypatch.setenv("GUARDIAN_WEB__LOGIN_MAX_FAILURES", "3")  # both processes read it
    get_store(load_settings()).migrate()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from guardian.cli import main; main()",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            f"{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        remote = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 30
        while True:  # wait for the other process to listen
            try:
                if remote.get("/healthz").status_code < 500:
                    break
            except httpx.TransportError:
                if other.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        local = TestClient(_app(), base_url="https://testserver")
        for i in range(3):  # remote, local, remote: neither process alone has seen 3
            client = remote if i % 2 == 0 else local
            assert client.post("/login", data={"username": "viewer1", "password": "guess"}).status_code == 401
        for client in (remote, local):
            blocked = client.post("/login", data={"username": "viewer1", "password": PASSWORD})
            assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        # Another user from elsewhere is not affected by viewer1's lockout.
        assert local.post("/login", data={"username": "admin1", "password": PASSWORD}).status_code in (200, 303)
    finally:
        other.terminate()
        other.wait(timeout=10)


@pytest.mark.postgres
def test_a_parallel_burst_gets_no_more_guesses_than_the_limit(pg_env: str) -> None:
    # Twelve tries at once for one user name, each on its own connection: at most 5 are let through.
    from concurrent.futures import ThreadPoolExecutor

    from guardian.store import get_store

    store = get_store(load_settings())
    store.migrate()
    throttle = LoginThrottle(lambda: store, 5, 100, 900.0)
    with ThreadPoolExecutor(max_workers=6) as pool:
        attempts = list(pool.map(lambda i: throttle.begin("ann", f"10.0.0.{i}"), range(12)))
    let_through = sum(1 for a in attempts if a.retry_after == 0)
    assert let_through <= 5
    # Contention may refuse more than needed (each try counts the others), never fewer: serial tries
    # afterwards get exactly the guesses that are left, then 429.
    later = [throttle.begin("ann", f"10.0.1.{i}").retry_after for i in range(6)]
    assert later.count(0) == 5 - let_through and later[-1] > 0
